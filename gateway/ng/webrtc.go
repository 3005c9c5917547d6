package ng

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// The WebRTC side of an SDP: DTLS-SRTP (RFC 5763, RFC 8122), ICE
// credentials (RFC 8839), mids and BUNDLE (RFC 5888, RFC 8843), and the
// payload types and SSRCs that route a bundled transport's packets.

// MaxSSRCs bounds the a=ssrc sources of one m= line that are kept.
const MaxSSRCs = 16

// fingerprintLen are the hash functions of RFC 8122 section 5 a
// fingerprint may name, with their digest lengths.
var fingerprintLen = map[string]int{"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}

// ParseFingerprint normalises an a=fingerprint value: the hash name in
// lower case, the digest as upper-case hex pairs joined by colons.
func ParseFingerprint(v string) (hash string, digest []byte, err error) {
	h, d, ok := strings.Cut(strings.TrimSpace(v), " ")
	h = strings.ToLower(h)
	n, known := fingerprintLen[h]
	if !ok || !known {
		return "", nil, errors.New("a=fingerprint: want \"sha-256 AB:CD:...\"")
	}
	d = strings.TrimSpace(d)
	if len(d) != 3*n-1 {
		return "", nil, errors.New("a=fingerprint: digest length does not match " + h)
	}
	out := make([]byte, n)
	for i := range n {
		if i > 0 && d[3*i-1] != ':' {
			return "", nil, errors.New("a=fingerprint: digest is not colon-separated hex")
		}
		if _, err := hex.Decode(out[i:i+1], []byte(d[3*i:3*i+2])); err != nil {
			return "", nil, errors.New("a=fingerprint: digest is not colon-separated hex")
		}
	}
	return h, out, nil
}

// FormatFingerprint formats a digest as an a=fingerprint value.
func FormatFingerprint(hash string, digest []byte) string {
	var b strings.Builder
	b.Grow(len(hash) + 1 + 3*len(digest))
	b.WriteString(hash)
	b.WriteByte(' ')
	const hx = "0123456789ABCDEF"
	for i, c := range digest {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(hx[c>>4])
		b.WriteByte(hx[c&15])
	}
	return b.String()
}

// webrtcSession are the session-level attributes an m= line inherits.
type webrtcSession struct {
	fingerprint, setup string
	tlsID              string
	ufrag, pwd         string
	bundle             []string
}

func sessionWebRTC(sd *sdp.SessionDescription) (webrtcSession, error) {
	var s webrtcSession
	for _, a := range sd.Attributes {
		switch a.Key {
		case "fingerprint":
			if s.fingerprint != "" {
				continue // the first one; RFC 8122 allows several
			}
			h, d, err := ParseFingerprint(a.Value)
			if err != nil {
				return s, errWrap(err)
			}
			s.fingerprint = FormatFingerprint(h, d)
		case "setup":
			if !validSetup(a.Value) {
				return s, errWrap(errors.New("a=setup:" + clip(a.Value) + ": want actpass, active, passive or holdconn"))
			}
			s.setup = a.Value
		case "ice-ufrag":
			s.ufrag = a.Value
		case "ice-pwd":
			s.pwd = a.Value
		case "tls-id":
			s.tlsID = a.Value
		case "group":
			if isBundleGroup(a) && s.bundle == nil {
				s.bundle = strings.Fields(a.Value)[1:]
				if len(s.bundle) > MaxMedia {
					return s, errWrap(errors.New("a=group:BUNDLE names more mids than there may be m= lines"))
				}
			}
		}
	}
	return s, nil
}

func errWrap(err error) error { return fmt.Errorf("%w: %w", ErrSDP, err) }

// mediaWebRTC reads the WebRTC attributes of one m= line into m.
func mediaWebRTC(m *Media, md *sdp.MediaDescription, sess *webrtcSession) error {
	m.Fingerprint, m.Setup, m.ICEUfrag, m.ICEPwd, m.TLSID = sess.fingerprint, sess.setup, sess.ufrag, sess.pwd, sess.tlsID
	fpSeen := false
	for _, a := range md.Attributes {
		switch a.Key {
		case "fingerprint":
			if fpSeen {
				continue
			}
			h, d, err := ParseFingerprint(a.Value)
			if err != nil {
				return err
			}
			m.Fingerprint, fpSeen = FormatFingerprint(h, d), true
		case "setup":
			if !validSetup(a.Value) {
				return errors.New("a=setup:" + clip(a.Value) + ": want actpass, active, passive or holdconn")
			}
			m.Setup = a.Value
		case "ice-ufrag":
			m.ICEUfrag = a.Value
		case "ice-pwd":
			m.ICEPwd = a.Value
		case "tls-id":
			m.TLSID = a.Value
		case "bundle-only":
			m.BundleOnly = true
		case "mid":
			if a.Value == "" || strings.ContainsAny(a.Value, " \t") {
				return errors.New("a=mid: want a token")
			}
			m.Mid = a.Value
		case "ssrc":
			f, _, _ := strings.Cut(a.Value, " ")
			v, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return errors.New("a=ssrc:" + clip(a.Value) + ": not an SSRC")
			}
			ssrc := uint32(v)
			if len(m.SSRCs) < MaxSSRCs && !containsU32(m.SSRCs, ssrc) {
				m.SSRCs = append(m.SSRCs, ssrc)
			}
		}
	}
	if strings.Contains(m.Proto, "RTP/") {
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil || pt > 127 {
				return errors.New("payload type " + clip(f) + ": want 0 to 127")
			}
			m.PTs = append(m.PTs, uint8(pt))
		}
	}
	for _, mid := range sess.bundle {
		if m.Mid != "" && mid == m.Mid {
			m.Bundled = true
		}
	}
	m.BundleOnly = m.BundleOnly && m.Bundled && m.Port == 0
	return nil
}

func validSetup(v string) bool {
	switch v {
	case "actpass", "active", "passive", "holdconn":
		return true
	}
	return false
}

func isBundleGroup(a sdp.Attribute) bool {
	return a.Key == "group" && (a.Value == "BUNDLE" || strings.HasPrefix(a.Value, "BUNDLE "))
}

// setMid replaces the a=mid of as, or adds one.
func setMid(as []sdp.Attribute, mid string) []sdp.Attribute {
	for i := range as {
		if as[i].Key == "mid" {
			as[i].Value = mid
			return as
		}
	}
	return append(as, sdp.Attribute{Key: "mid", Value: mid})
}

func containsU32(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
