package ng

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// chromeOffer is an offer Chromium 156 made for a fake camera and
// microphone (audio + video, BUNDLE, rtcp-mux, DTLS, ICE with trickle).
func chromeOffer(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/chrome-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const chromeFP = "sha-256 A8:F7:79:00:E9:0D:56:00:D5:41:88:3F:F0:C6:5E:3E:46:D6:D7:00:23:6F:61:DC:F2:B2:E6:80:BC:58:E8:2D"

func TestParseChromeOffer(t *testing.T) {
	s, err := ParseSDP(chromeOffer(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Media) != 2 || strings.Join(s.Bundle, ",") != "0,1" {
		t.Fatalf("%d media, BUNDLE %v", len(s.Media), s.Bundle)
	}
	a, v := s.Media[0], s.Media[1]
	for _, m := range []Media{a, v} {
		if !m.DTLS || m.Proto != ProtoTLSSAVPF || m.Fingerprint != chromeFP || m.Setup != "actpass" ||
			m.ICEUfrag != "7++r" || m.ICEPwd != "fxbdu5oskw8BCArblvwl9lDz" || !m.Mux || !m.Bundled || len(m.Crypto) != 0 {
			t.Errorf("%s: %+v", m.Type, m)
		}
	}
	if a.Mid != "0" || v.Mid != "1" {
		t.Errorf("mids %q %q", a.Mid, v.Mid)
	}
	if got := a.PTs; len(got) != 8 || got[0] != 111 || got[7] != 126 {
		t.Errorf("audio PTs %v", got)
	}
	if got := v.PTs; len(got) != 23 || got[0] != 96 || got[22] != 120 {
		t.Errorf("video PTs %v", got)
	}
	if len(a.SSRCs) != 1 || a.SSRCs[0] != 770103454 || len(v.SSRCs) != 2 || v.SSRCs[1] != 869251136 {
		t.Errorf("SSRCs %v %v", a.SSRCs, v.SSRCs)
	}
}

// TestRewriteWebRTC turns the Chrome offer into the SDP toward a SIP
// endpoint (SDES, no BUNDLE, no DTLS, no ICE) and into one toward a
// browser (DTLS, ICE-lite, BUNDLE on one port).
func TestRewriteWebRTC(t *testing.T) {
	relay := netip.MustParseAddr("198.51.100.7")
	t.Run("toward SIP", func(t *testing.T) {
		s, err := ParseSDP(chromeOffer(t))
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Rewrite([]MediaPlan{
			{Addr: relay, Port: 30000, RTCPPort: 30001, Proto: ProtoSAVP, Crypto: []string{"1 AES_CM_128_HMAC_SHA1_80 inline:A"}},
			{Addr: relay, Port: 30002, RTCPPort: 30003, Proto: ProtoSAVPF, Crypto: []string{"1 AES_CM_128_HMAC_SHA1_80 inline:B"}},
		}, Options{ReplaceOrigin: true})
		if err != nil {
			t.Fatal(err)
		}
		body := string(out)
		for _, bad := range []string{"a=group:BUNDLE", "a=fingerprint", "a=setup", "a=ice-", "a=candidate", "UDP/TLS", "a=rtcp-mux", "a=end-of-candidates"} {
			if strings.Contains(body, bad) {
				t.Errorf("toward SIP the SDP has %q:\n%s", bad, body)
			}
		}
		for _, want := range []string{"m=audio 30000 RTP/SAVP 111 63 9 0 8 13 110 126\r\n", "m=video 30002 RTP/SAVPF 96 97 102",
			"a=rtcp:30001\r\n", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:A\r\n", "a=mid:0\r\n", "a=mid:1\r\n",
			"a=rtpmap:111 opus/48000/2\r\n", "a=rtcp-fb:96 nack pli\r\n", "a=ssrc:770103454 cname:kK8/rYHmwRTBQA1h\r\n",
			"a=msid:15230f0a-8714-4b0b-b8be-deca114d470f 9e3ceda7-e484-4dc6-872c-f8e4e9f3293e\r\n", "a=extmap-allow-mixed\r\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("toward SIP the SDP lacks %q:\n%s", want, body)
			}
		}
	})
	t.Run("toward a browser", func(t *testing.T) {
		s, err := ParseSDP(chromeOffer(t))
		if err != nil {
			t.Fatal(err)
		}
		fp := "sha-256 " + strings.Repeat("AB:", 31) + "CD"
		p := MediaPlan{Addr: relay, Port: 40000, RTCPPort: 40000, Mux: true, MuxOnly: true, ICEUfrag: "uuuuuuuu",
			ICEPwd: "pppppppppppppppppppppppp", Fingerprint: fp, Setup: "active"}
		out, err := s.Rewrite([]MediaPlan{p, p}, Options{Bundle: []string{"0", "1"}})
		if err != nil {
			t.Fatal(err)
		}
		body := string(out)
		if strings.Contains(body, "a=crypto") || strings.Contains(body, chromeFP[8:]) || strings.Contains(body, "a=rtcp:") {
			t.Errorf("toward the browser:\n%s", body)
		}
		if n := strings.Count(body, "a=group:BUNDLE 0 1\r\n"); n != 1 {
			t.Errorf("%d BUNDLE groups:\n%s", n, body)
		}
		for _, want := range []string{"a=ice-lite\r\n", "m=audio 40000 UDP/TLS/RTP/SAVPF 111", "m=video 40000 UDP/TLS/RTP/SAVPF 96",
			"a=fingerprint:" + fp + "\r\n", "a=setup:active\r\n", "a=ice-ufrag:uuuuuuuu\r\n",
			"a=candidate:1 1 UDP 2130706431 198.51.100.7 40000 typ host\r\n", "a=rtcp-fb:111 transport-cc\r\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("toward the browser the SDP lacks %q:\n%s", want, body)
			}
		}
		s2, err := ParseSDP(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range s2.Media {
			if m.Fingerprint != fp || m.Setup != "active" || !m.Bundled || m.Port != 40000 || !m.Mux {
				t.Errorf("re-parsed %s: %+v", m.Type, m)
			}
		}
	})
}

func TestParseFingerprint(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{chromeFP, chromeFP},
		{"SHA-256 " + strings.ToLower(chromeFP[8:]), chromeFP},
		{"sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33", "sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33"},
		{"md5 00:11", ""},
		{"sha-256 A8:F7", ""},
		{"sha-256 " + strings.Replace(chromeFP[8:], ":", "-", 1), ""},
		{"sha-256 " + strings.Replace(chromeFP[8:], "A8", "G8", 1), ""},
		{"sha-256", ""},
	} {
		h, d, err := ParseFingerprint(tc.in)
		got := ""
		if err == nil {
			got = FormatFingerprint(h, d)
		}
		if got != tc.want {
			t.Errorf("%q: got %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseWebRTCErrors(t *testing.T) {
	head := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	for _, tc := range []struct{ name, in string }{
		{"bad fingerprint", head + "m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 00\r\n"},
		{"bad session fingerprint", head + "a=fingerprint:x\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\n"},
		{"bad setup", head + "m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=setup:both\r\n"},
		{"bad payload type", head + "m=audio 4000 RTP/AVP 300\r\n"},
		{"bad ssrc", head + "m=audio 4000 RTP/AVP 0\r\na=ssrc:x cname:y\r\n"},
		{"empty mid", head + "m=audio 4000 RTP/AVP 0\r\na=mid:\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseSDP([]byte(tc.in)); !errors.Is(err, ErrSDP) {
				t.Errorf("err = %v, want ErrSDP", err)
			}
		})
	}
}

// TestParseFirefoxStyle: session-level fingerprint and setup (as Firefox
// writes them), a=tls-id, and an a=bundle-only line.
func TestParseFirefoxStyle(t *testing.T) {
	in := "v=0\r\no=mozilla 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"a=fingerprint:sha-256 " + chromeFP[8:] + "\r\na=setup:actpass\r\na=group:BUNDLE 0 1\r\na=ice-options:trickle\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 109\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:u1\r\na=ice-pwd:p1\r\na=tls-id:abc\r\na=rtcp-mux\r\n" +
		"m=video 0 UDP/TLS/RTP/SAVPF 120\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=bundle-only\r\n" +
		"m=video 0 UDP/TLS/RTP/SAVPF 121\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=bundle-only\r\n"
	s, err := ParseSDP([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	a, v, x := s.Media[0], s.Media[1], s.Media[2]
	if a.Fingerprint != chromeFP || a.Setup != "actpass" || a.TLSID != "abc" || a.ICEUfrag != "u1" || a.BundleOnly || !a.Bundled {
		t.Errorf("audio %+v", a)
	}
	if v.Fingerprint != chromeFP || !v.BundleOnly || !v.Bundled || v.Port != 0 || v.ICEUfrag != "" {
		t.Errorf("bundle-only video %+v", v)
	}
	if x.BundleOnly || x.Bundled {
		t.Errorf("a=bundle-only outside the BUNDLE group counts: %+v", x)
	}
}
