package ng

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const offerAV = "v=0\r\n" +
	"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n" +
	"s=call\r\n" +
	"c=IN IP4 192.0.2.10\r\n" +
	"t=0 0\r\n" +
	"a=ice-ufrag:F7gI\r\n" +
	"m=audio 49170 RTP/SAVP 0 8 101\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-16\r\n" +
	"a=rtcp:49171\r\n" +
	"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n" +
	"a=candidate:1 1 UDP 2130706431 192.0.2.10 49170 typ host\r\n" +
	"a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n" +
	"a=sendrecv\r\n" +
	"m=video 51372 RTP/SAVPF 96\r\n" +
	"c=IN IP4 192.0.2.11\r\n" +
	"a=rtpmap:96 H264/90000\r\n" +
	"a=fmtp:96 profile-level-id=42e01f\r\n" +
	"a=rtcp-mux\r\n" +
	"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n" +
	"a=crypto:3 AEAD_AES_128_GCM inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9\r\n"

func TestParseSDP(t *testing.T) {
	s, err := ParseSDP([]byte(offerAV))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Media) != 2 {
		t.Fatalf("%d media", len(s.Media))
	}
	a, v := s.Media[0], s.Media[1]
	if a.Type != "audio" || a.Proto != ProtoSAVP || a.Port != 49170 || a.RTCPPort != 49171 || a.Mux ||
		a.Addr != netip.MustParseAddr("192.0.2.10") || len(a.Crypto) != 1 {
		t.Errorf("audio %+v", a)
	}
	if v.Type != "video" || v.Proto != ProtoSAVPF || v.Port != 51372 || v.RTCPPort != 51373 || !v.Mux ||
		v.Addr != netip.MustParseAddr("192.0.2.11") || len(v.Crypto) != 2 {
		t.Errorf("video %+v", v)
	}
}

func TestRewrite(t *testing.T) {
	s, err := ParseSDP([]byte(offerAV))
	if err != nil {
		t.Fatal(err)
	}
	relay := netip.MustParseAddr("198.51.100.7")
	out, err := s.Rewrite([]MediaPlan{
		{Addr: relay, Port: 30000, RTCPPort: 30001, Proto: ProtoAVP},
		{Addr: relay, Port: 30002, RTCPPort: 30002, Mux: true, MuxOnly: true, Crypto: []string{"7 AES_CM_128_HMAC_SHA1_80 inline:KEY"}},
	}, Options{ReplaceOrigin: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "v=0\r\n" +
		"o=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\n" +
		"s=call\r\n" +
		"c=IN IP4 198.51.100.7\r\n" +
		"t=0 0\r\n" +
		"m=audio 30000 RTP/AVP 0 8 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=sendrecv\r\n" +
		"a=rtcp:30001\r\n" +
		"m=video 30002 RTP/SAVPF 96\r\n" +
		"c=IN IP4 198.51.100.7\r\n" +
		"a=rtpmap:96 H264/90000\r\n" +
		"a=fmtp:96 profile-level-id=42e01f\r\n" +
		"a=rtcp-mux\r\n" +
		"a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:KEY\r\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestParseSDPRejects(t *testing.T) {
	head := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"garbage", "hello"},
		{"no connection", head + "m=audio 4000 RTP/AVP 0\r\n"},
		{"multicast", head + "c=IN IP4 224.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n"},
		{"hostname", head + "c=IN IP4 example.com\r\nm=audio 4000 RTP/AVP 0\r\n"},
		{"family mismatch", head + "c=IN IP6 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n"},
		{"port range", head + "c=IN IP4 192.0.2.1\r\nm=audio 4000/2 RTP/AVP 0\r\n"},
		{"bad rtcp", head + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:0\r\n"},
		{"too many media", head + "c=IN IP4 192.0.2.1\r\n" + strings.Repeat("m=audio 4000 RTP/AVP 0\r\n", MaxMedia+1)},
		{"too large", head + strings.Repeat("a=x:y\r\n", MaxSDP/7+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSDP([]byte(tc.in)); !errors.Is(err, ErrSDP) {
				t.Errorf("err = %v, want ErrSDP", err)
			}
		})
	}
}

func FuzzRewrite(f *testing.F) {
	f.Add([]byte(offerAV))
	f.Add([]byte("v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 4000 RTP/AVP 0\nm=video 0 RTP/AVP 96\n"))
	// DTLS and BUNDLE: a real browser offer, and a small one with the
	// fingerprint at session level (as Firefox writes it).
	f.Add(chromeOffer(f))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v\r\na=fingerprint:sha-1 " +
		"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=mid:a\r\na=setup:actpass\r\na=rtcp-mux\r\na=ssrc:1 cname:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:v\r\na=setup:actpass\r\n"))
	relay := netip.MustParseAddr("198.51.100.7")
	fp := "sha-256 " + strings.Repeat("0A:", 31) + "0B"
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSDP(b)
		if err != nil {
			return
		}
		plans := make([]MediaPlan, len(s.Media))
		for i, m := range s.Media {
			switch {
			case m.Port != 0 && m.DTLS:
				// Toward a browser: every bundled m= line on one port.
				plans[i] = MediaPlan{Addr: relay, Port: 40000, RTCPPort: 40000, MuxOnly: true, Fingerprint: fp, Setup: "actpass",
					ICEUfrag: "u", ICEPwd: "p", Mid: m.Mid, Crypto: []string{"1 AES_CM_128_HMAC_SHA1_80 inline:K"}}
			case m.Port != 0:
				plans[i] = MediaPlan{Addr: relay, Port: 30000 + 2*i, RTCPPort: 30001 + 2*i, Mux: m.Mux, Crypto: []string{"1 AES_CM_128_HMAC_SHA1_80 inline:K"}}
			}
		}
		out, err := s.Rewrite(plans, Options{ReplaceOrigin: true, Bundle: s.Bundle})
		if err != nil {
			return
		}
		s2, err := ParseSDP(out)
		if err != nil {
			t.Fatalf("the rewritten SDP does not parse: %v\n%q", err, out)
		}
		if strings.Join(s2.Bundle, " ") != strings.Join(s.Bundle, " ") {
			t.Fatalf("BUNDLE %v became %v", s.Bundle, s2.Bundle)
		}
		if len(s2.Media) != len(plans) {
			t.Fatalf("%d media after rewriting %d", len(s2.Media), len(plans))
		}
		for i, m := range s2.Media {
			if plans[i].Port == 0 {
				continue
			}
			if m.Port != plans[i].Port || m.Addr != relay || len(m.Crypto) != 1 {
				t.Fatalf("m= line %d: %+v", i, m)
			}
			if p := plans[i]; p.Fingerprint != "" && (m.Fingerprint != fp || m.Setup != "actpass" || !m.DTLS || m.ICEUfrag != "u") {
				t.Fatalf("m= line %d lost its DTLS attributes: %+v", i, m)
			}
		}
	})
}
