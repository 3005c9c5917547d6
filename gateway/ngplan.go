package gateway

import (
	"net/netip"
	"strings"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// plan is how the stream's m= line reads for side to: the gateway's
// sockets on to's leg and its key toward to. info holds the sockets once
// the stream is a session.
func (st *ngStream) plan(c *ngCall, to int, proto string, info *SessionInfo) ng.MediaPlan {
	if st.disabled {
		return ng.MediaPlan{}
	}
	lid := c.legs[to]
	p := ng.MediaPlan{Proto: st.proto[to]}
	// A transport-protocol flag on a later request (Kamailio sends the
	// offer's flags with the answer too) may switch feedback (AVP/AVPF)
	// but never whether the side was negotiated with SRTP.
	if proto != "" && ng.Secure(proto) == !st.plain[to] {
		// Nor whether it is keyed by DTLS: Kamailio configurations say
		// RTP/SAVPF toward browsers too.
		switch {
		case st.dtls[to] && !ng.OverDTLS(proto):
			proto = "UDP/TLS/" + proto
		case !st.dtls[to] && ng.OverDTLS(proto):
			proto = strings.TrimPrefix(proto, "UDP/TLS/")
		}
		p.Proto = proto
	}
	fp := c.cert.fp.String()
	if info != nil {
		li := &info.Internal
		if lid == legCloud {
			li = &info.Cloud
		}
		rtp, _ := netip.ParseAddrPort(li.Local)
		rtcp, _ := netip.ParseAddrPort(li.LocalRTCP)
		p.Addr, p.Port, p.RTCPPort = rtp.Addr(), int(rtp.Port()), int(rtcp.Port())
		if li.DTLS != nil {
			fp = li.DTLS.Fingerprint.String() // the certificate the transport uses
		}
	} else if so := st.socks[lid]; so.rtp != nil {
		p.Addr, p.Port, p.RTCPPort = so.rtp.local.Addr(), int(so.rtp.local.Port()), int(so.rtcp.local.Port())
	}
	p.Mid = st.mid[to]
	offer := !c.answered && to == 1
	if st.dtls[to] {
		// DTLS-SRTP: the gateway's own certificate, never the other
		// side's fingerprint; actpass in an offer (RFC 5763 section 5).
		p.Mux, p.MuxOnly = true, true
		p.Fingerprint, p.Setup = fp, string(st.role[to])
		if offer {
			p.Setup = "actpass"
		}
		return st.withICE(p, to)
	}
	switch {
	case offer:
		p.Mux, p.MuxOnly = st.muxOffered, st.muxOnly
		for _, k := range st.offered {
			p.Crypto = append(p.Crypto, k.line())
		}
		return st.withICE(p, to)
	case st.mux[to]:
		p.Mux, p.MuxOnly = true, true
	}
	if k := st.own[to]; k != nil {
		p.Crypto = []string{k.line()}
	}
	return st.withICE(p, to)
}

// withICE adds the ICE-lite credentials toward side to, if any.
func (st *ngStream) withICE(p ng.MediaPlan, to int) ng.MediaPlan {
	if ic := st.ice[to]; ic != nil && p.Port != 0 {
		p.ICEUfrag, p.ICEPwd = ic.ufrag, ic.pwd
	}
	return p
}
