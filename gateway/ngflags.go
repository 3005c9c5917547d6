package gateway

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// ngFlags are the flags of an offer or answer that mediaedge honours.
// docs/ng.md lists every flag: supported, ignored or refused.
type ngFlags struct {
	direction     []string
	proto         string // transport-protocol; "": the sender's
	replaceOrigin bool
	iceForce      bool // ICE: force, mediaedge is an ICE-lite agent toward the recipient
	// DTLS: off refuses DTLS-SRTP (offered or answered: SDES or plain
	// only); passive and active pick the gateway's role toward a peer
	// that offered actpass (default: active, as rtpengine).
	dtlsOff, dtlsPassive, dtlsActive bool
	// SDES
	sdesOff, sdesPad, sdesLifetime bool
	sdesNo, sdesOnly               map[*Suite]bool
	// rtcp-mux
	muxOffer, muxRequire, muxDemux, muxAccept bool
	family                                    string // address-family: "", IP4, IP6
}

// ngIgnoredFlags are entries of the `flags` list that change nothing here:
// mediaedge trusts the SDP address, and its latching and source checks
// are the legs' configuration (symmetric).
var ngIgnoredFlags = map[string]bool{
	"trust-address": true, "symmetric": true, "asymmetric": true, "port-latching": true,
	"strict-source": true, "media-handover": true, "loop-protect": true, "no-rtcp-attribute": true,
	"full-rtcp-attribute": true, "generate-mid": true, "original-sendrecv": true,
	"reset": true, "all": true, "unidirectional": true,
}

// parseNGFlags reads the flags of req; a flag mediaedge would have to
// ignore to the caller's harm is refused with an error.
func parseNGFlags(req ng.Dict) (*ngFlags, error) {
	f := &ngFlags{direction: req.Strs("direction"), sdesNo: map[*Suite]bool{}, sdesOnly: map[*Suite]bool{}}
	if p := req.Str("transport-protocol"); p != "" {
		if !ng.ValidProto(p) {
			return nil, fmt.Errorf("transport-protocol %q is not supported (RTP/AVP, RTP/SAVP, RTP/AVPF, RTP/SAVPF, UDP/TLS/RTP/SAVP, UDP/TLS/RTP/SAVPF)", clip(p))
		}
		f.proto = p
	}
	for _, r := range req.Strs("replace") {
		switch r {
		case "origin":
			f.replaceOrigin = true
		case "session-connection", "session connection":
			// mediaedge always replaces every connection address.
		case "sdp-version", "SDP-version", "username", "session-name", "zero-address":
			// Harmless to leave as the sender wrote them.
		default:
			return nil, fmt.Errorf("replace %q is not supported", clip(r))
		}
	}
	switch ice := req.Str("ICE"); ice {
	case "", "remove", "default":
		// mediaedge is not an ICE agent for the sender: ICE attributes
		// are always removed.
	case "force":
		f.iceForce = true
	default:
		return nil, fmt.Errorf("ICE %q is not supported (remove or force)", clip(ice))
	}
	switch dtls := req.Str("DTLS"); dtls {
	case "":
	case "off", "no", "disable":
		f.dtlsOff = true
	case "passive":
		f.dtlsPassive = true
	case "active":
		f.dtlsActive = true
	default:
		return nil, fmt.Errorf("DTLS %q is not supported (off, passive, active)", clip(dtls))
	}
	if f.dtlsOff && ng.OverDTLS(f.proto) {
		return nil, fmt.Errorf("DTLS off contradicts transport-protocol %s", f.proto)
	}
	switch h := req.Str("DTLS-fingerprint"); strings.ToLower(h) {
	case "", "sha-256":
	default:
		return nil, fmt.Errorf("DTLS-fingerprint %q is not supported: the gateway's fingerprint is sha-256", clip(h))
	}
	for _, s := range req.Strs("SDES") {
		if err := f.sdes(s); err != nil {
			return nil, err
		}
	}
	for _, m := range req.Strs("rtcp-mux") {
		switch m {
		case "offer":
			f.muxOffer = true
		case "require":
			f.muxRequire = true
		case "demux":
			f.muxDemux = true
		case "accept":
			f.muxAccept = true
		default:
			return nil, fmt.Errorf("rtcp-mux %q is not supported (offer, require, demux, accept)", clip(m))
		}
	}
	for _, fl := range req.Strs("flags") {
		if s, ok := strings.CutPrefix(fl, "SDES-"); ok {
			if err := f.sdes(s); err != nil {
				return nil, err
			}
			continue
		}
		if !ngIgnoredFlags[fl] {
			return nil, fmt.Errorf("flag %q is not supported", clip(fl))
		}
	}
	if rc := req.Str("record-call"); rc != "" && rc != "no" && rc != "off" {
		return nil, fmt.Errorf("record-call is not supported")
	}
	if req.Has("media-address") {
		return nil, fmt.Errorf("media-address is not supported: the SDP address is used")
	}
	if req.Has("codec") {
		return nil, fmt.Errorf("codec manipulation is not supported: codecs pass through untouched")
	}
	switch af := req.Str("address-family"); af {
	case "", "IP4", "IP6":
		f.family = af
	default:
		return nil, fmt.Errorf("address-family %q: want IP4 or IP6", clip(af))
	}
	return f, nil
}

func (f *ngFlags) sdes(s string) error {
	switch {
	case s == "off" || s == "no" || s == "disable":
		f.sdesOff = true
	case s == "pad":
		f.sdesPad = true
	case s == "lifetime":
		f.sdesLifetime = true
	case s == "on":
	case strings.HasPrefix(s, "no-"):
		su := LookupSuite(s[3:])
		if su == nil {
			return fmt.Errorf("SDES %q: unknown suite", clip(s))
		}
		f.sdesNo[su] = true
	case strings.HasPrefix(s, "only-"):
		su := LookupSuite(s[5:])
		if su == nil {
			return fmt.Errorf("SDES %q: unknown suite", clip(s))
		}
		f.sdesOnly[su] = true
	default:
		return fmt.Errorf("SDES %q is not supported (off, no-<suite>, only-<suite>, pad, lifetime)", clip(s))
	}
	return nil
}

// suiteOK reports whether the SDES flags let the gateway offer su.
func (f *ngFlags) suiteOK(su *Suite) bool {
	if f.sdesNo[su] {
		return false
	}
	return len(f.sdesOnly) == 0 || f.sdesOnly[su]
}

// checkFamily refuses an address-family the leg's address does not have.
func (f *ngFlags) checkFamily(a netip.Addr) error {
	if f.family == "" || (f.family == "IP4") == a.Is4() {
		return nil
	}
	return fmt.Errorf("address-family %s: the leg's address is %s", f.family, a)
}
