package gateway

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/dtls/v3"
)

// Keying methods of a leg.
const (
	// KeyingSDES: the peer's key comes in an a=crypto line (RFC 4568)
	// and the gateway announces its own the same way.
	KeyingSDES = "sdes"
	// KeyingDTLS: the keys are exported from a DTLS handshake on the
	// leg's media port (DTLS-SRTP, RFC 5763/5764), as WebRTC does.
	KeyingDTLS = "dtls"
)

// DTLSRole is the gateway's a=setup role on a DTLS leg (RFC 4145/5763).
type DTLSRole string

// Roles of the gateway on a DTLS leg.
const (
	// DTLSActive: the gateway connects (DTLS client).
	DTLSActive DTLSRole = "active"
	// DTLSPassive: the peer connects (the gateway is the DTLS server).
	DTLSPassive DTLSRole = "passive"
)

// DTLS states of a leg, as session info shows them.
const (
	DTLSStateNew        = "new"
	DTLSStateConnecting = "connecting"
	DTLSStateConnected  = "connected"
	DTLSStateFailed     = "failed"
	DTLSStateClosed     = "closed"
)

// answerSetup returns the gateway's role for the peer's a=setup value
// (RFC 5763 section 5): the opposite of active or passive; pref for
// actpass or an absent attribute. holdconn and anything else are refused.
func answerSetup(peer string, pref DTLSRole) (DTLSRole, error) {
	switch strings.ToLower(strings.TrimSpace(peer)) {
	case "active":
		return DTLSPassive, nil
	case "passive":
		return DTLSActive, nil
	case "actpass", "":
		if pref != DTLSActive {
			return DTLSPassive, nil
		}
		return DTLSActive, nil
	}
	return "", fmt.Errorf("%q: want active, passive or actpass", clip(peer))
}

// dtlsProfile is a DTLS-SRTP protection profile (RFC 5764, RFC 7714)
// with the SRTP suite whose keys it exports. Immutable values from
// dtlsProfiles; compare by pointer.
type dtlsProfile struct {
	name  string
	alias string // the RFC's spelling, accepted too
	id    dtls.SRTPProtectionProfile
	suite *Suite
}

// dtlsProfiles are the profiles mediaedge negotiates, in the default
// order of preference.
var dtlsProfiles = []*dtlsProfile{
	{name: "SRTP_AEAD_AES_256_GCM", id: dtls.SRTP_AEAD_AES_256_GCM, suite: suiteAEAD256},
	{name: "SRTP_AEAD_AES_128_GCM", id: dtls.SRTP_AEAD_AES_128_GCM, suite: suiteAEAD128},
	{name: "SRTP_AES128_CM_SHA1_80", alias: "SRTP_AES128_CM_HMAC_SHA1_80", id: dtls.SRTP_AES128_CM_HMAC_SHA1_80, suite: suiteAES128SHA80},
	{name: "SRTP_AES128_CM_SHA1_32", alias: "SRTP_AES128_CM_HMAC_SHA1_32", id: dtls.SRTP_AES128_CM_HMAC_SHA1_32, suite: suiteAES128SHA32},
}

// DTLSProfileNames returns the names of the supported DTLS-SRTP
// profiles, in the default order of preference.
func DTLSProfileNames() []string {
	out := make([]string, len(dtlsProfiles))
	for i, p := range dtlsProfiles {
		out[i] = p.name
	}
	return out
}

// lookupDTLSProfile returns the profile named name (either spelling,
// case-insensitive), or nil.
func lookupDTLSProfile(name string) *dtlsProfile {
	for _, p := range dtlsProfiles {
		if strings.EqualFold(p.name, name) || (p.alias != "" && strings.EqualFold(p.alias, name)) {
			return p
		}
	}
	return nil
}

// profileByID returns the profile with use_srtp id, or nil.
func profileByID(id dtls.SRTPProtectionProfile) *dtlsProfile {
	for _, p := range dtlsProfiles {
		if p.id == id {
			return p
		}
	}
	return nil
}

// dtlsPlan is a validated DTLS keying request for one leg: the gateway's
// role, the peer's certificate fingerprints (any one may match; empty:
// not known yet, no handshake until an update gives one), the profiles
// the leg accepts, in order of preference, and the gateway's certificate.
// Immutable once built.
type dtlsPlan struct {
	role     DTLSRole
	peerFP   []Fingerprint
	profiles []*dtlsProfile
	// cert is the gateway's certificate whose fingerprint the peer was
	// told: every handshake of the leg uses it, even after a reload
	// changed gateway.dtls.certificate. nil: the gateway's current one,
	// pinned when the leg gets its first transport (dtlsAttach).
	cert *dtlsCert
}

// newDTLSPlan validates a DTLS leg: peerSetup is the peer's a=setup
// value, fingerprints its a=fingerprint values, profiles the profile
// names the leg allows (empty: gateway.dtls.profiles); each must also be
// in gateway.dtls.profiles. Errors are *RequestError naming the field
// (setup, fingerprint or dtls_profiles) without the leg; callers prefix
// it.
func newDTLSPlan(cfg *DTLSConfig, peerSetup string, fingerprints []string, profiles []string) (*dtlsPlan, error) {
	p := &dtlsPlan{}
	var err error
	if p.role, err = answerSetup(peerSetup, DTLSRole(cfg.Setup)); err != nil {
		return nil, &RequestError{Field: "setup", Err: err}
	}
	for _, s := range fingerprints {
		if s == "" {
			continue
		}
		fp, err := ParseFingerprint(s)
		if err != nil {
			return nil, &RequestError{Field: "fingerprint", Err: err}
		}
		p.peerFP = append(p.peerFP, fp)
	}
	allowed := make([]*dtlsProfile, 0, len(cfg.Profiles))
	for _, n := range cfg.Profiles {
		if pr := lookupDTLSProfile(n); pr != nil {
			allowed = append(allowed, pr)
		}
	}
	if len(profiles) == 0 {
		p.profiles = allowed
	}
	for _, n := range profiles {
		pr := lookupDTLSProfile(n)
		switch {
		case pr == nil:
			return nil, &RequestError{Field: "dtls_profiles", Err: fmt.Errorf("unknown profile %q (known: %v)", clip(n), DTLSProfileNames())}
		case !containsProfile(allowed, pr):
			return nil, &RequestError{Field: "dtls_profiles", Err: fmt.Errorf("%s is not in gateway.dtls.profiles %v", pr.name, cfg.Profiles)}
		case !containsProfile(p.profiles, pr):
			p.profiles = append(p.profiles, pr)
		}
	}
	if len(p.profiles) == 0 {
		return nil, &RequestError{Field: "dtls_profiles", Err: errors.New("no profile allowed")}
	}
	return p, nil
}

func containsProfile(ps []*dtlsProfile, p *dtlsProfile) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// dtlsLeg is the DTLS keying state of one leg. Owned by the session's
// worker, like the leg.
type dtlsLeg struct {
	plan *dtlsPlan
	// t is the transport whose handshake keys the leg; a re-key (update
	// with a new fingerprint or setup) replaces it. With BUNDLE the legs
	// of the other m= lines have none: they go through the transport
	// leg (ngbundle.go).
	t *dtlsTransport
	// handshakes counts completed handshakes (the key epoch).
	handshakes uint32
}

// DTLSInfo is the DTLS state of a leg in session info.
type DTLSInfo struct {
	// Fingerprint is the gateway's certificate fingerprint (its
	// a=fingerprint on this leg); Setup is the gateway's role (its
	// a=setup in an answer).
	Fingerprint Fingerprint `json:"fingerprint"`
	Setup       DTLSRole    `json:"setup"`
	// State is new, connecting, connected, failed or closed; Reason says
	// why a handshake failed.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Profile is the negotiated DTLS-SRTP profile; "" before the
	// handshake.
	Profile string `json:"profile,omitempty"`
	// PeerFingerprints are the fingerprints the peer's certificate is
	// checked against; PeerFingerprint is the one that matched.
	PeerFingerprints []Fingerprint `json:"peer_fingerprints"`
	PeerFingerprint  *Fingerprint  `json:"peer_fingerprint,omitempty"`
	// Handshakes counts the handshakes completed on the leg.
	Handshakes uint32 `json:"handshakes"`
	// ICE is the gateway's ICE-lite side of the leg.
	ICE *ICEInfo `json:"ice,omitempty"`
}

// ICEInfo is the ICE-lite description of a leg for the peer's SDP.
type ICEInfo struct {
	Ufrag string `json:"ufrag"`
	// Pwd is only in the answer to create (like the a=crypto keys).
	Pwd        string   `json:"pwd,omitempty"`
	Candidates []string `json:"candidates"`
}

// buildDTLSLeg gives leg l (its remote addresses set) a dedicated rtcp-mux
// socket from the leg's range, then sets it up with setupDTLSLeg. The
// keys come from the handshake, which starts when the session joins its
// worker.
func (g *Gateway) buildDTLSLeg(l *leg, lc *LegConfig, plan *dtlsPlan) error {
	so, err := g.bindPort(lc, l.id, false)
	if err != nil {
		return err
	}
	so.owner = l
	l.rtp, l.rtcp = so, so
	return setupDTLSLeg(l, plan)
}

// setupDTLSLeg makes l, whose dedicated socket is set (l.rtp, owned by
// l), a DTLS leg under plan: rtcp-mux on that socket, no keys until the
// handshake. l.ice is the caller's: set it (e.g. the credentials an ng
// offer announced) for ICE-lite, as WebRTC peers need; nil: no ICE. For
// ng: call it instead of installing SDES keys, before the session is
// installed.
func setupDTLSLeg(l *leg, plan *dtlsPlan) error {
	if l.rtp == nil || l.rtp.dm != nil {
		return errors.New("gateway: a DTLS leg needs a dedicated socket")
	}
	l.rtcp = l.rtp
	l.mux = true
	l.remoteRTCP = l.remote
	l.plain = false
	l.dtls = &dtlsLeg{plan: plan}
	return nil
}
