package sut

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{"command": "offer", "replace": []string{"origin", "session-connection"}, "n": 42,
		"nested": map[string]any{"list": []any{"a", 7, map[string]any{}}}}
	b, err := bencode(in)
	if err != nil {
		t.Fatal(err)
	}
	// keys sorted, as bencoding requires
	if !bytes.HasPrefix(b, []byte("d7:command5:offer1:ni42e6:nestedd4:listl1:ai7edeee7:replacel6:origin18:session-connectionee")) {
		t.Fatalf("encoded %s", b)
	}
	v, err := bdecode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"command": "offer", "replace": []any{"origin", "session-connection"}, "n": int64(42),
		"nested": map[string]any{"list": []any{"a", int64(7), map[string]any{}}}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("decoded %#v", v)
	}
	for _, bad := range []string{"", "d", "i12", "5:abc", "d1:ae", "di1ei2ee", "x", "l" + string(bytes.Repeat([]byte("l"), 40)), "3:abcX", "-1:"} {
		if _, err := bdecode([]byte(bad)); !errors.Is(err, errBencode) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}

func FuzzBdecode(f *testing.F) {
	f.Add([]byte("d6:result2:ok3:sdp5:v=0\r\ne"))
	f.Add([]byte("li1ei-2e0:e"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := bdecode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to bytes that decode to the same value.
		e, err := bencode(v)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", v, err)
		}
		v2, err := bdecode(e)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip %q -> %#v -> %q -> %#v (%v)", b, v, e, v2, err)
		}
	})
}

func TestParseSDP(t *testing.T) {
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\nm=audio 16000 RTP/SAVP 0\r\n" +
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB" + "\r\n" +
		"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC" + "|2^31\r\n"
	m, err := parseSDP(sdp)
	if err != nil {
		t.Fatal(err)
	}
	if m.port != 16000 || m.addr.String() != "127.0.0.1" || len(m.cryptos) != 2 || m.cryptos[1].Tag != 2 {
		t.Fatalf("%+v", m)
	}
	if _, err := parseSDP("v=0\r\n"); err == nil {
		t.Error("SDP without media accepted")
	}
}
