package ng

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFrameLen(t *testing.T) {
	offer := "1_2_0 d7:command5:offer7:call-id3:abc3:sdp4:v=0\n5:flagsl5:trust3:fooee"
	for _, tc := range []struct {
		name string
		in   string
		want int // -1: an error
	}{
		{"ping", "c1 d7:command4:pinge", 20},
		{"two back to back", "c1 d7:command4:pingec2 d7:command4:pinge", 20},
		{"offer", offer + "garbage", len(offer)},
		{"integer", "c i-42e", 7},
		{"list", "c l1:ai1ee", 10},
		{"empty", "", 0},
		{"cookie only", "12_3", 0},
		{"cut in the dictionary", "c1 d7:command4:pi", 0},
		{"cut in a length", "c1 d7:comm", 0},
		{"cut in an integer", "c i12", 0},
		{"cut after the cookie", "c1 ", 0},
		{"no cookie", strings.Repeat("x", MaxCookie+1), -1},
		{"empty cookie", " d4:pingi1ee", -1},
		{"not bencode", "c1 {\"command\":\"ping\"}", -1},
		{"bad length", "c1 d7x:command4:pinge", -1},
		{"long integer", "c i" + strings.Repeat("1", 30) + "e", -1},
		{"string too long", "c 999999:", -1},
		{"deep", "c " + strings.Repeat("l", MaxDepth+1), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := FrameLen([]byte(tc.in))
			var de *DecodeError
			switch {
			case tc.want < 0 && !errors.As(err, &de):
				t.Fatalf("FrameLen = %d, %v; want a *DecodeError", n, err)
			case tc.want >= 0 && (err != nil || n != tc.want):
				t.Fatalf("FrameLen = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
}

// TestFrameLenEveryCut: every prefix of a message asks for more bytes,
// the whole message is found, and bytes after it are not taken.
func TestFrameLenEveryCut(t *testing.T) {
	msg, err := Reply("5_77_1", map[string]any{"command": "offer", "sdp": "v=0\r\nm=audio 4000 RTP/SAVP 0\r\n",
		"flags": []any{"trust-address", int64(-7)}, "replace": []any{"origin"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(msg); i++ {
		if n, err := FrameLen(msg[:i]); n != 0 || err != nil {
			t.Fatalf("prefix of %d bytes: %d, %v", i, n, err)
		}
	}
	if n, err := FrameLen(append(bytes.Clone(msg), msg...)); n != len(msg) || err != nil {
		t.Fatalf("whole: %d, %v; want %d", n, err, len(msg))
	}
}

// FuzzFrameLen: FrameLen never panics, a length it returns lies within
// the input and is found again in that much of it, and a message whose
// body decodes is found whole.
func FuzzFrameLen(f *testing.F) {
	f.Add([]byte("c1 d7:command4:pinge"))
	f.Add([]byte("c1 d7:command4:pingec2 d7:command4:pinge"))
	f.Add([]byte("1_2_0 d7:command5:offer3:sdp4:v=0\n5:flagsl5:trustee"))
	f.Add([]byte("c i-42e"))
	f.Add([]byte("c1 d7:comm"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := FrameLen(b)
		if err != nil {
			return
		}
		if n < 0 || n > len(b) {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		if n > 0 {
			if m, err := FrameLen(b[:n]); m != n || err != nil {
				t.Fatalf("the message alone: %d, %v; want %d", m, err, n)
			}
		}
		if _, body, ok := SplitCookie(b); ok && n == 0 {
			if _, err := Decode(body); err == nil {
				t.Fatalf("a message whose body decodes was not found: %q", b)
			}
		}
	})
}
