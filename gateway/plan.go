package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
)

// legPlan is a validated LegRequest.
type legPlan struct {
	remote, remoteRTCP netip.AddrPort
	mux                bool
	peer               *Crypto // nil: plain
	suite              *Suite
	lifetime           uint64
	mki                bool
	dtls               *dtlsPlan // nil: SDES or plain
	noICE              bool      // a DTLS leg without ICE-lite
}

const maxIDLen = 64

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// planLeg validates one leg of a request against the leg's configuration.
func planLeg(name string, r *LegRequest, lc *LegConfig, dc *DTLSConfig) (legPlan, error) {
	var p legPlan
	var err error
	bad := func(field string, err error) (legPlan, error) {
		if p.peer != nil {
			p.peer.Wipe()
		}
		return legPlan{}, &RequestError{Field: name + "." + field, Err: err}
	}
	if p.remote, err = parseRemote(r.Remote); err != nil {
		return bad("remote", err)
	}
	if p.remoteRTCP, err = parseRemote(r.RemoteRTCP); err != nil {
		return bad("remote_rtcp", err)
	}
	p.mux = r.RTCPMux
	switch r.Keying {
	case "", KeyingSDES:
		if r.Setup != "" || r.Fingerprint != "" || len(r.DTLSProfiles) > 0 || r.NoICE {
			return bad("keying", errors.New("setup, fingerprint, dtls_profiles and no_ice need \"keying\": \"dtls\""))
		}
	case KeyingDTLS:
		// DTLS-SRTP legs multiplex everything on one port (RFC 8843,
		// RFC 7983).
		p.mux = true
	default:
		return bad("keying", fmt.Errorf("%q: want sdes or dtls", clip(r.Keying)))
	}
	if p.mux && p.remoteRTCP.IsValid() && p.remoteRTCP != p.remote {
		return bad("remote_rtcp", errors.New("must be empty or equal remote with rtcp_mux"))
	}
	if r.Keying == KeyingDTLS {
		if r.Crypto != "" || r.Suite != "" || r.MKI || r.KeyLifetime != 0 {
			return bad("crypto", errors.New("a DTLS leg takes its keys from the handshake: no crypto, suite, mki or key_lifetime"))
		}
		dp, err := newDTLSPlan(dc, r.Setup, []string{r.Fingerprint}, r.DTLSProfiles)
		if err != nil {
			var re *RequestError
			if errors.As(err, &re) {
				return bad(re.Field, re.Err)
			}
			return bad("keying", err)
		}
		p.dtls = dp
		p.noICE = r.NoICE
		return p, nil
	}
	if r.Crypto == "" {
		if !lc.AllowPlain {
			return bad("crypto", errors.New("required: this leg does not allow plain RTP (allow_plain)"))
		}
		if r.Suite != "" || r.MKI || r.KeyLifetime != 0 {
			return bad("suite", errors.New("a plain RTP leg has no key"))
		}
		return p, nil
	}
	if p.peer, err = ParseCrypto(r.Crypto); err != nil {
		return bad("crypto", err)
	}
	if err := checkPeerCrypto(p.peer, lc); err != nil {
		return bad("crypto", err)
	}
	p.suite = p.peer.Suite
	if r.Suite != "" {
		if p.suite = LookupSuite(r.Suite); p.suite == nil {
			return bad("suite", fmt.Errorf("unknown suite %q", clip(r.Suite)))
		}
	}
	if !lc.allows(p.suite) {
		return bad("suite", fmt.Errorf("%s is not allowed on this leg (suites: %v)", p.suite.Name, lc.Suites))
	}
	p.lifetime = lc.KeyLifetime
	if r.KeyLifetime != 0 {
		if r.KeyLifetime < 16 || r.KeyLifetime > maxLifetimeRTP {
			return bad("key_lifetime", fmt.Errorf("%d: want 16 to 2^48 packets", r.KeyLifetime))
		}
		p.lifetime = r.KeyLifetime
	}
	p.mki = r.MKI
	return p, nil
}

// checkPeerCrypto checks a peer's crypto line against the leg's policy.
func checkPeerCrypto(c *Crypto, lc *LegConfig) error {
	if !lc.allows(c.Suite) {
		return fmt.Errorf("%s is not allowed on this leg (suites: %v)", c.Suite.Name, lc.Suites)
	}
	if (c.UnencryptedSRTP || c.UnencryptedSRTCP) && !lc.AllowNullCipher {
		return errors.New("UNENCRYPTED_SRTP/SRTCP need allow_null_cipher on this leg")
	}
	return nil
}

func (p *legPlan) wipe() {
	if p.peer != nil {
		p.peer.Wipe()
	}
}

// sameKey reports whether two crypto lines share a master key.
func sameKey(a, b *Crypto) bool {
	for _, x := range a.Keys {
		for _, y := range b.Keys {
			if string(x.Key) == string(y.Key) {
				return true
			}
		}
	}
	return false
}
