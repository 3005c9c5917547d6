package webrtc

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// sdpMedia is what the test reads from the first m= line of an SDP.
type sdpMedia struct {
	Addr   netip.AddrPort // c= address and m= port
	Proto  string
	PTs    []string
	Crypto []string // a=crypto values
	Attrs  []string // every a= line of the session and the media, without "a="
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

// parseSDP reads the first audio m= line of sdp with its connection
// address (media level over session level).
func parseSDP(sdp string) (sdpMedia, error) {
	var m sdpMedia
	var addr netip.Addr
	port, inMedia := -1, false
	for _, ln := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(ln, "m="):
			if inMedia {
				goto done // the first m= line only
			}
			f := strings.Fields(ln[2:])
			if len(f) < 4 || f[0] != "audio" {
				return m, fmt.Errorf("want an audio m= line first, got %q", ln)
			}
			p, err := strconv.Atoi(f[1])
			if err != nil {
				return m, fmt.Errorf("m= port %q", f[1])
			}
			port, inMedia, m.Proto, m.PTs = p, true, f[2], f[3:]
		case strings.HasPrefix(ln, "c="):
			f := strings.Fields(ln[2:])
			if len(f) == 3 {
				a, err := netip.ParseAddr(f[2])
				if err != nil {
					return m, fmt.Errorf("c= address %q", f[2])
				}
				addr = a
			}
		case strings.HasPrefix(ln, "a="):
			m.Attrs = append(m.Attrs, ln[2:])
			if v, ok := strings.CutPrefix(ln, "a=crypto:"); ok && inMedia {
				m.Crypto = append(m.Crypto, v)
			}
		}
	}
done:
	if port < 0 || !addr.IsValid() {
		return m, fmt.Errorf("no audio m= line with a c= address")
	}
	m.Addr = netip.AddrPortFrom(addr, uint16(port))
	return m, nil
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

// sdesAnswer is the SDES side's answer: PCMU only, its own key under the
// tag of the offer's line of the same suite, RTCP on the next port.
func sdesAnswer(at netip.AddrPort, tag string, k sdesKey) string {
	return fmt.Sprintf("v=0\r\no=- 2 2 IN IP4 %s\r\ns=ffmpeg\r\nc=IN IP4 %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=crypto:%s %s inline:%s\r\na=sendrecv\r\n",
		at.Addr(), at.Addr(), at.Port(), tag, sdesSuite, k.inline())
}

func TestParseSDP(t *testing.T) {
	k := sdesKey{Key: make([]byte, 16), Salt: make([]byte, 14)}
	k.Key[0] = 7
	at := netip.MustParseAddrPort("192.0.2.1:4000")
	m, err := parseSDP(sdesAnswer(at, "3", k))
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
	for _, bad := range []string{"", "v=0\r\nm=video 1 RTP/AVP 0\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n",
		"v=0\r\nm=audio 1 RTP/AVP 0\r\n"} {
		if _, err := parseSDP(bad); err == nil {
			t.Errorf("parseSDP(%q) took it", bad)
		}
	}
}
