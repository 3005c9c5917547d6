package ng

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeAnyKeyOrder(t *testing.T) {
	// Kamailio does not sort keys; the SDP carries CRLF and binary bytes.
	in := "d7:command5:offer3:sdp11:v=0\r\no=\x00\xff\r\n7:call-id3:abc7:replacel6:origin18:session-connectione5:counti-42ee"
	v, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"command": "offer", "sdp": "v=0\r\no=\x00\xff\r\n", "call-id": "abc",
		"replace": []any{"origin", "session-connection"}, "count": int64(-42)}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got %#v\nwant %#v", v, want)
	}
	out, err := Encode(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(out)
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("round trip: %v %#v", err, back)
	}
	if !bytes.HasPrefix(out, []byte("d7:call-id")) {
		t.Errorf("encoded keys not sorted: %q", out)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"unterminated dict", "d3:abc"},
		{"unterminated list", "l1:a"},
		{"unterminated int", "i12"},
		{"leading zero", "i012e"},
		{"minus zero", "i-0e"},
		{"empty int", "ie"},
		{"int overflow", "i99999999999999999999e"},
		{"string past end", "5:abc"},
		{"string length leading zero", "03:abc"},
		{"huge string length", "9999999:a"},
		{"non-string key", "di1ei2ee"},
		{"repeated key", "d1:a1:b1:a1:ce"},
		{"trailing", "1:ax"},
		{"bad byte", "x"},
		{"too deep", strings.Repeat("l", MaxDepth+1) + strings.Repeat("e", MaxDepth+1)},
		{"too many items", "l" + strings.Repeat("i1e", MaxItems+1) + "e"},
		{"too many values", "l" + strings.Repeat("l"+strings.Repeat("i1e", 200)+"e", 11) + "e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("Decode(%q) = %v, want a DecodeError", clip(tc.in), err)
			}
		})
	}
}

func TestSplitCookie(t *testing.T) {
	for _, tc := range []struct {
		in     string
		cookie string
		ok     bool
	}{
		{"1234_5_0 d4:pinge", "1234_5_0", true},
		{" d4:pinge", "", false},
		{"nospace", "", false},
		{"bad\x01cookie d4:pinge", "", false},
		{strings.Repeat("c", MaxCookie+1) + " de", "", false},
	} {
		c, _, ok := SplitCookie([]byte(tc.in))
		if c != tc.cookie || ok != tc.ok {
			t.Errorf("SplitCookie(%q) = %q %v", clip(tc.in), c, ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("d7:command4:pinge"))
	f.Add([]byte("d7:command5:offer7:call-id3:abc8:from-tag1:a3:sdp4:v=0\n7:replacel6:origine4:SDESl6:no-AEAD_AES_256_GCMee"))
	f.Add([]byte("li-1ei0e3:abcd1:xleee"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		out, err := Encode(nil, v)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		v2, err := Decode(out)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip changed the value: %v", err)
		}
	})
}
