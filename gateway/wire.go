package gateway

import "time"

// CreateRequest is the body of POST /v1/sessions.
type CreateRequest struct {
	// ID names the session; empty: the gateway picks one.
	ID       string     `json:"id,omitempty"`
	Internal LegRequest `json:"internal"`
	Cloud    LegRequest `json:"cloud"`
}

// LegRequest describes one leg of a new session.
type LegRequest struct {
	// Remote is where the gateway sends to ("ip:port"); empty: latched
	// from the first packet that authenticates.
	Remote string `json:"remote,omitempty"`
	// RemoteRTCP is the peer's RTCP address without rtcp-mux; empty: the
	// RTP port plus one, or latched.
	RemoteRTCP string `json:"remote_rtcp,omitempty"`
	// RTCPMux multiplexes RTCP on the RTP port (RFC 5761).
	RTCPMux bool `json:"rtcp_mux"`
	// Crypto is the peer's a=crypto line: the key the peer encrypts with.
	Crypto string `json:"crypto,omitempty"`
	// Suite is the suite of the gateway's own key on this leg; empty: the
	// peer's suite.
	Suite string `json:"suite,omitempty"`
	// KeyLifetime is the packet budget of the gateway's key (0: the leg's
	// key_lifetime).
	KeyLifetime uint64 `json:"key_lifetime,omitempty"`
	// MKI puts a 1-byte MKI in the gateway's key, so that the peer can
	// tell keys apart during a re-key.
	MKI bool `json:"mki,omitempty"`
	// Keying is "sdes" (the default: Crypto carries the peer's key) or
	// "dtls": the keys come from a DTLS handshake on the leg's port
	// (DTLS-SRTP, as WebRTC endpoints do). A DTLS leg has a port of its
	// own in either port mode, rtcp-mux and ICE-lite.
	Keying string `json:"keying,omitempty"`
	// Setup is the peer's a=setup on a DTLS leg: active, passive or
	// actpass (the default: the gateway takes gateway.dtls.setup).
	Setup string `json:"setup,omitempty"`
	// Fingerprint is the peer's a=fingerprint on a DTLS leg
	// ("sha-256 AB:CD:..."), checked against its certificate. Empty: not
	// known yet (the gateway offers first); give it with an update, no
	// handshake starts before.
	Fingerprint string `json:"fingerprint,omitempty"`
	// DTLSProfiles restricts the leg's DTLS-SRTP profiles to these (each
	// in gateway.dtls.profiles); empty: gateway.dtls.profiles.
	DTLSProfiles []string `json:"dtls_profiles,omitempty"`
	// NoICE turns ICE-lite off on a DTLS leg, for DTLS-SRTP peers that do
	// not do ICE: DTLS is then taken from the leg's remote or, before it
	// is known, from any source. With ICE (the default, as WebRTC needs)
	// a leg without a remote takes DTLS only from sources whose
	// connectivity check passed.
	NoICE bool `json:"no_ice,omitempty"`
}

// UpdateRequest is the body of PATCH /v1/sessions/{id}.
type UpdateRequest struct {
	Internal *LegUpdate `json:"internal,omitempty"`
	Cloud    *LegUpdate `json:"cloud,omitempty"`
}

// LegUpdate changes a leg's remote address or the peer's key.
type LegUpdate struct {
	Remote     string `json:"remote,omitempty"`
	RemoteRTCP string `json:"remote_rtcp,omitempty"`
	// Crypto is the peer's new a=crypto line; its previous key is still
	// accepted for the leg's rekey_grace.
	Crypto string `json:"crypto,omitempty"`
	// Fingerprint and Setup re-key a DTLS leg: a new handshake with the
	// peer's new certificate fingerprint or a=setup (a re-offer). The
	// keys of the last handshake stay in use until it completes.
	Fingerprint string `json:"fingerprint,omitempty"`
	Setup       string `json:"setup,omitempty"`
	// ICERestart gives a DTLS leg new ICE credentials (an ICE restart).
	// The DTLS association is kept unless the peer starts a new one or
	// Fingerprint or Setup asks for one.
	ICERestart bool `json:"ice_restart,omitempty"`
}

// RekeyRequest is the body of POST /v1/sessions/{id}/rekey.
type RekeyRequest struct {
	Leg string `json:"leg"`
}

// RekeyResult is the answer to a re-key: the gateway's new key on the leg.
type RekeyResult struct {
	Leg      string    `json:"leg"`
	Crypto   string    `json:"crypto"`
	KeyEpoch uint32    `json:"key_epoch"`
	ActiveAt time.Time `json:"active_at"`
}
