package gateway

import (
	"errors"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// DTLS-SRTP on the sides of an ng call: which side is a DTLS leg, the
// gateway's role toward it, and its re-keys by re-offer. The handshake
// itself is the gateway's (dtls*.go).

// dtlsPref is the gateway's role toward a peer that offers actpass: the
// DTLS flag's, else gateway.dtls.setup.
func dtlsPref(cfg *Config, f *ngFlags) DTLSRole {
	switch {
	case f.dtlsPassive:
		return DTLSPassive
	case f.dtlsActive:
		return DTLSActive
	}
	return DTLSRole(cfg.DTLS.Setup)
}

// takeDTLS makes side's leg a DTLS leg from the side's m= line: its
// fingerprint, a=setup and ICE ufrag.
func (st *ngStream) takeDTLS(cfg *Config, side int, m ng.Media) error {
	n := st.index + 1
	switch {
	case m.Fingerprint == "":
		return refuse("m= line %d: DTLS-SRTP without a=fingerprint", n)
	case !m.Mux:
		return refuse("m= line %d: DTLS-SRTP needs a=rtcp-mux (one handshake per transport)", n)
	case m.Setup == "holdconn":
		return refuse("m= line %d: a=setup:holdconn is not supported", n)
	case cfg.NG.PortMode != PortsDedicated:
		return refuse("m= line %d: DTLS-SRTP needs gateway.ng.port_mode dedicated", n)
	}
	st.dtls[side] = true
	st.peerFP[side], st.peerSetup[side], st.peerUfrag[side], st.peerTLSID[side] = m.Fingerprint, m.Setup, m.ICEUfrag, m.TLSID
	st.mux[side] = true
	return nil
}

// updateDTLS applies a DTLS side's re-offer or re-answer. As rtpengine
// does, a new DTLS association (a handshake on the side's transport;
// the keys of the last one stay in use until it completes) follows a
// changed fingerprint, a changed or dropped a=tls-id (RFC 8842), or a
// role the gateway must switch to. An ICE restart alone keeps the
// association, as browsers do (they keep DTLS across an ICE restart and
// often send no a=tls-id); a peer that starts a new association anyway
// with a new ClientHello gets one (dtlsIntake). The other side's keys and schedule are not
// touched. An ICE restart gives the gateway new ICE credentials
// (RFC 8839 section 4.4.1.1.2). A bundled stream has nothing of its own
// to update: its transport's stream does it.
func (s *ngServer) updateDTLS(st *ngStream, sender int, lid legID, m ng.Media) error {
	n := st.index + 1
	if st.via[sender] != nil {
		return nil
	}
	if !m.DTLS || m.Fingerprint == "" {
		return refuse("m= line %d: switching a DTLS-SRTP leg to another keying is not supported", n)
	}
	fp, setup := "", ""
	if m.Fingerprint != st.peerFP[sender] {
		fp = m.Fingerprint
	}
	iceRestart := m.ICEUfrag != st.peerUfrag[sender] && st.ice[sender] != nil
	oldID := st.peerTLSID[sender]
	newAssoc := oldID != "" && m.TLSID != oldID
	role := st.role[sender]
	switch {
	case m.Setup == "active" && role != DTLSPassive, m.Setup == "passive" && role != DTLSActive:
		setup = m.Setup
	case m.Setup == "holdconn":
		return refuse("m= line %d: a=setup:holdconn is not supported", n)
	}
	remote, _ := remoteOf(st, sender, m)
	if fp == "" && setup == "" && !newAssoc && !iceRestart && (!remote.IsValid() || remote == st.remote[sender]) {
		st.peerTLSID[sender] = m.TLSID
		return nil
	}
	if fp == "" && (setup != "" || newAssoc) {
		fp = m.Fingerprint // a new handshake under the same fingerprint
	}
	sess := st.sess
	if sess == nil {
		return refuse("m= line %d: the session ended", n)
	}
	w := sess.w
	var ic *iceCreds
	var newRole DTLSRole
	var opErr error
	ctx, cancel := ngContext()
	defer cancel()
	err := w.do(ctx, func() {
		if sess.ended {
			opErr = ErrNotFound
			return
		}
		l := &sess.legs[lid]
		if l.dtls == nil {
			opErr = errors.New("not a DTLS leg")
			return
		}
		if remote.IsValid() && remote != l.remote {
			l.remote, l.remoteRTCP = remote, remote
		}
		switch {
		case fp != "":
			opErr = w.dtlsUpdate(l, fp, setup, iceRestart)
		case iceRestart:
			// New ICE credentials, the DTLS association kept.
			var fresh *iceCreds
			if fresh, opErr = newICECreds(); opErr == nil {
				l.ice = fresh
			}
		}
		ic, newRole = l.ice, l.dtls.plan.role
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return refuse("m= line %d: %v", n, err)
	}
	if remote.IsValid() {
		st.remote[sender], st.remoteRTCP[sender] = remote, remote
	}
	st.peerFP[sender], st.peerSetup[sender], st.peerUfrag[sender], st.peerTLSID[sender] = m.Fingerprint, m.Setup, m.ICEUfrag, m.TLSID
	st.role[sender] = newRole
	if st.ice[sender] != nil {
		st.ice[sender] = ic
	}
	return nil
}

// inheritBundle gives the bundled m= lines of an offer that leave the
// transport's attributes out (RFC 8843 section 7.1.3; a=bundle-only
// lines do) those of the bundle's first usable m= line: fingerprint,
// setup, ICE credentials, tls-id and rtcp-mux.
func inheritBundle(body *ng.SDP) {
	var t *ng.Media
	for i := range body.Media {
		m := &body.Media[i]
		if !m.Bundled {
			continue
		}
		if t == nil {
			if m.Port != 0 {
				t = m
			}
			continue
		}
		if m.Fingerprint == "" && m.Setup == "" {
			m.Fingerprint, m.Setup, m.TLSID, m.DTLS = t.Fingerprint, t.Setup, t.TLSID, m.DTLS || t.DTLS
		}
		if m.ICEUfrag == "" {
			m.ICEUfrag, m.ICEPwd = t.ICEUfrag, t.ICEPwd
		}
		m.Mux = m.Mux || t.Mux
	}
}
