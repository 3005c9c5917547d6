package webrtc

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// sdpMedia is what the test reads from one m= section of an SDP.
type sdpMedia struct {
	Kind   string         // audio, video
	Addr   netip.AddrPort // c= address (media level over session level) and m= port
	Proto  string
	PTs    []string
	Crypto []string // a=crypto values
	Attrs  []string // every a= line of the session and of this section, without "a="
}

// has reports whether an attribute name (before any ':') is present.
func (m sdpMedia) has(name string) bool {
	for _, a := range m.Attrs {
		if n, _, _ := strings.Cut(a, ":"); n == name {
			return true
		}
	}
	return false
}

// attr returns the value of the first attribute called name.
func (m sdpMedia) attr(name string) string {
	for _, a := range m.Attrs {
		if n, v, _ := strings.Cut(a, ":"); n == name {
			return v
		}
	}
	return ""
}

// parseSDP reads the first m= section of sdp, which must be audio.
func parseSDP(sdp string) (sdpMedia, error) {
	ms, err := parseSections(sdp)
	if err != nil {
		return sdpMedia{}, err
	}
	if ms[0].Kind != "audio" {
		return sdpMedia{}, fmt.Errorf("want an audio m= line first, got %s", ms[0].Kind)
	}
	return ms[0], nil
}

// parseSections reads every m= section of sdp.
func parseSections(sdp string) ([]sdpMedia, error) {
	var out []sdpMedia
	var sessAttrs []string
	var sessAddr, addr netip.Addr
	port := -1
	var cur *sdpMedia
	done := func() error {
		if cur == nil {
			return nil
		}
		a := addr
		if !a.IsValid() {
			a = sessAddr
		}
		if !a.IsValid() {
			return fmt.Errorf("m=%s has no c= address", cur.Kind)
		}
		cur.Addr = netip.AddrPortFrom(a, uint16(port))
		cur.Attrs = append(append([]string{}, sessAttrs...), cur.Attrs...)
		out = append(out, *cur)
		return nil
	}
	for _, ln := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(ln, "m="):
			if err := done(); err != nil {
				return nil, err
			}
			f := strings.Fields(ln[2:])
			if len(f) < 4 {
				return nil, fmt.Errorf("m= line %q", ln)
			}
			p, err := strconv.Atoi(f[1])
			if err != nil || p < 0 || p > 65535 {
				return nil, fmt.Errorf("m= port %q", f[1])
			}
			cur, addr, port = &sdpMedia{Kind: f[0], Proto: f[2], PTs: f[3:]}, netip.Addr{}, p
		case strings.HasPrefix(ln, "c="):
			f := strings.Fields(ln[2:])
			if len(f) != 3 {
				continue
			}
			a, err := netip.ParseAddr(f[2])
			if err != nil {
				return nil, fmt.Errorf("c= address %q", f[2])
			}
			if cur == nil {
				sessAddr = a
			} else {
				addr = a
			}
		case strings.HasPrefix(ln, "a=") && cur == nil:
			sessAttrs = append(sessAttrs, ln[2:])
		case strings.HasPrefix(ln, "a="):
			cur.Attrs = append(cur.Attrs, ln[2:])
			if v, ok := strings.CutPrefix(ln, "a=crypto:"); ok {
				cur.Crypto = append(cur.Crypto, v)
			}
		}
	}
	if err := done(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no m= line")
	}
	return out, nil
}

// rtpmapPT returns the payload type of codec (e.g. "VP8/90000") in m.
func (m sdpMedia) rtpmapPT(codec string) (int, error) {
	for _, a := range m.Attrs {
		v, ok := strings.CutPrefix(a, "rtpmap:")
		if !ok {
			continue
		}
		pt, c, _ := strings.Cut(v, " ")
		if strings.EqualFold(c, codec) {
			return strconv.Atoi(pt)
		}
	}
	return 0, fmt.Errorf("no a=rtpmap for %s", codec)
}

// cryptoFor finds the a=crypto line of suite and returns its tag and key.
func (m sdpMedia) cryptoFor(suite string) (string, sdesKey, error) {
	for _, c := range m.Crypto {
		f := strings.Fields(c)
		if len(f) < 3 || f[1] != suite {
			continue
		}
		inline, _, _ := strings.Cut(strings.TrimPrefix(f[2], "inline:"), "|")
		raw, err := base64.StdEncoding.DecodeString(inline)
		if err != nil || len(raw) != 30 {
			return "", sdesKey{}, fmt.Errorf("a=crypto %s: the key is not 30 bytes of base64", suite)
		}
		return f[0], sdesKey{Key: raw[:16], Salt: raw[16:]}, nil
	}
	return "", sdesKey{}, fmt.Errorf("no a=crypto line for %s among %d", suite, len(m.Crypto))
}

// sdesAnswer is the SDES side's answer: one codec, its own key under the
// tag of the offer's line of the same suite, RTCP on the next port.
func sdesAnswer(at netip.AddrPort, tag string, k sdesKey, c audioCodec) string {
	return sdpHead(at) + sdesMedia("audio", at, tag, k, c.rtpmapLine(), "a=ptime:20\r\n")
}

// sdpHead is the session part of the SDES side's SDP.
func sdpHead(at netip.AddrPort) string {
	return fmt.Sprintf("v=0\r\no=- 2 2 IN IP4 %s\r\ns=ffmpeg\r\nc=IN IP4 %s\r\nt=0 0\r\n", at.Addr(), at.Addr())
}

// sdesMedia is one m= section of the SDES side's SDP with one codec
// ("<pt> <codec>/<rate>") and extra attribute lines.
func sdesMedia(kind string, at netip.AddrPort, tag string, k sdesKey, rtpmap, extra string) string {
	pt, _, _ := strings.Cut(rtpmap, " ")
	return fmt.Sprintf("m=%s %d RTP/SAVP %s\r\nc=IN IP4 %s\r\na=rtpmap:%s\r\n%sa=crypto:%s %s inline:%s\r\na=sendrecv\r\n",
		kind, at.Port(), pt, at.Addr(), rtpmap, extra, tag, sdesSuite, k.inline())
}

func TestParseSDP(t *testing.T) {
	k := sdesKey{Key: make([]byte, 16), Salt: make([]byte, 14)}
	k.Key[0] = 7
	at := netip.MustParseAddrPort("192.0.2.1:4000")
	m, err := parseSDP(sdesAnswer(at, "3", k, pcmu()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr != at || m.Proto != "RTP/SAVP" || len(m.PTs) != 1 || m.PTs[0] != "0" || !m.has("ptime") {
		t.Fatalf("parsed %+v", m)
	}
	tag, got, err := m.cryptoFor(sdesSuite)
	if err != nil || tag != "3" || got.inline() != k.inline() {
		t.Fatalf("crypto: tag %q key ok %v err %v", tag, got.inline() == k.inline(), err)
	}
	if _, _, err := m.cryptoFor("AEAD_AES_128_GCM"); err == nil {
		t.Fatal("found a suite that is not there")
	}
	v := netip.MustParseAddrPort("192.0.2.1:4002")
	av, err := parseSections(sdpHead(at) + sdesMedia("audio", at, "1", k, "0 PCMU/8000", "") +
		sdesMedia("video", v, "2", k, "96 VP8/90000", "a=mid:1\r\n"))
	if err != nil || len(av) != 2 {
		t.Fatalf("two sections: %v %+v", err, av)
	}
	if pt, err := av[1].rtpmapPT("VP8/90000"); err != nil || pt != 96 || av[1].Addr != v || av[1].attr("mid") != "1" || av[0].has("mid") {
		t.Fatalf("video section: pt %d err %v %+v", pt, err, av[1])
	}
	for _, bad := range []string{"", "v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 1 RTP/AVP 0\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n",
		"v=0\r\nm=audio 1 RTP/AVP 0\r\n"} {
		if _, err := parseSDP(bad); err == nil {
			t.Errorf("parseSDP(%q) took it", bad)
		}
	}
}
