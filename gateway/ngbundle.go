package gateway

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// BUNDLE (RFC 8843) puts the m= lines of a call toward a browser on one
// transport: one socket, one ICE-lite agent, one DTLS handshake, one pair
// of SRTP keys. Each m= line stays a session of its own, so that the SIP
// side keeps an ordinary port pair per m= line. The first bundled m=
// line's leg is the transport leg: it owns the socket, the ICE
// credentials, the DTLS state and the keys. The legs of the other m=
// lines point at it (leg.via) and have none of their own.
//
// Inbound, the transport leg authenticates and decrypts every packet
// (its srtp.Context keeps the state of every SSRC of the transport), then
// bundle.route picks the m= line's leg the packet is forwarded from:
//   - RTP by payload type: each m= line lists its payload types and a
//     browser keeps them distinct across a bundle (RFC 8843 section 9.1
//     requires it when the mid header extension is not used), the one
//     property of a packet that is always there and in the clear. The
//     mid header extension would need the negotiated extension ID and a
//     header-extension parse per packet, and a sender may stop sending
//     it once the receiver knows its SSRCs (RFC 8843 section 9.2); a=ssrc
//     lines are optional (Firefox leaves them out, and they do not cover
//     RTX or simulcast).
//   - RTCP by source: the sender SSRC when an m= line's RTP came from it,
//     else the first report block's or the feedback's media SSRC when an
//     m= line sent it; else the first m= line.
//
// RTP of a payload type no m= line lists, and packets of an m= line
// whose session ended, are dropped and counted as unknown_flow.
//
// Outbound, a bundled leg encrypts with the transport leg's out context
// and sends from its socket to its remote: two srtp.Contexts never
// encrypt with the same key (which, with the same SSRC and sequence
// number, would reuse a keystream).

// bundle is the routing table of a transport leg. Built with the call's
// sessions before any of them is installed, never changed after; the
// legs' fields it reads are owned by the transport's worker, the only
// caller of route.
type bundle struct {
	// legs are the bundled legs in m= line order; legs[0] is the
	// transport leg.
	legs []*leg
	// byPT maps a payload type to the leg of the m= line that lists it
	// (the first when two do).
	byPT [128]*leg
}

// newBundle makes the routing table of the transport leg legs[0]; pts
// are each leg's payload types.
func newBundle(legs []*leg, pts [][]uint8) *bundle {
	b := &bundle{legs: legs}
	for i, l := range legs {
		for _, pt := range pts[i] {
			if pt < 128 && b.byPT[pt] == nil {
				b.byPT[pt] = l
			}
		}
	}
	return b
}

// live reports whether l's session is on the worker.
func live(l *leg) bool { return l != nil && l.s.added && !l.s.ended }

// route returns the leg a packet that the transport leg t authenticated
// belongs to; plain is the decrypted packet. nil when it belongs to no
// m= line of the bundle (RTP of a payload type none lists, RFC 8843
// section 9.2) or to one whose session ended: the caller drops it.
func (b *bundle) route(t *leg, plain []byte, rtcp bool) *leg {
	var l *leg
	if !rtcp {
		l = b.byPT[plain[1]&0x7f]
	} else {
		l = b.routeRTCP(plain)
	}
	if l != t && !live(l) {
		return nil
	}
	return l
}

// routeRTCP routes a compound (or reduced-size) RTCP packet by its first
// packet.
func (b *bundle) routeRTCP(p []byte) *leg {
	sender := binary.BigEndian.Uint32(p[4:8])
	for _, l := range b.legs {
		if l.inSSRC.find(sender) >= 0 {
			return l
		}
	}
	var media uint32
	switch pt := p[1]; {
	case pt == 200 && p[0]&0x1f > 0 && len(p) >= 32: // SR with a report block
		media = binary.BigEndian.Uint32(p[28:32])
	case pt == 201 && p[0]&0x1f > 0 && len(p) >= 12: // RR with a report block
		media = binary.BigEndian.Uint32(p[8:12])
	case (pt == 205 || pt == 206) && len(p) >= 12: // RTPFB, PSFB
		media = binary.BigEndian.Uint32(p[8:12])
	default:
		return b.legs[0]
	}
	for _, l := range b.legs {
		if l.outSSRC.find(media) >= 0 {
			return l
		}
	}
	return b.legs[0]
}

// transport returns the leg whose socket, remote and keys l's packets
// use: its transport leg when l is bundled behind another, else l.
func (l *leg) transport() *leg {
	if l.via != nil {
		return l.via
	}
	return l
}

// bundleSide puts the streams of c whose m= lines are in side's BUNDLE
// (the offerer's group, or every DTLS stream toward a DTLS answerer) on
// the transport of the first of them: the others' sockets on side's leg
// are closed, and they take the first one's port, ICE credentials and
// DTLS state in every SDP toward side. in reports whether stream i is in
// the bundle; mid its a=mid, or "" to generate one. Locked: s.mu is held.
func (s *ngServer) bundleSide(c *ngCall, side int, in func(i int) bool, mid func(i int) string) {
	var first *ngStream
	var mids []string
	taken := map[string]bool{}
	for i := range c.streams {
		if m := mid(i); m != "" {
			taken[m] = true
		}
	}
	for i, st := range c.streams {
		if st.disabled || !st.dtls[side] || !in(i) {
			continue
		}
		m := mid(i)
		if m == "" {
			// JSEP (RFC 8829 section 5.2.1) wants an a=mid on every m=
			// line a browser receives.
			m = strconv.Itoa(i)
			for taken[m] {
				m = "m" + m
			}
			taken[m] = true
			st.mid[side] = m
		}
		mids = append(mids, m)
		st.bundled[side], st.bmid[side] = true, m
		if first == nil {
			first = st
			continue
		}
		st.via[side] = first
		st.ice[side] = nil
		lid := c.legs[side]
		so := st.socks[lid]
		if so.rtp != nil {
			s.g.closeSock(so.rtp)
		}
		if so.rtcp != nil && so.rtcp != so.rtp {
			s.g.closeSock(so.rtcp)
		}
		st.socks[lid] = ngSocks{}
	}
	c.bundle[side] = mids
}

// bundlePlans gives the bundled streams' m= lines toward side to the
// transport's port, ICE credentials and DTLS attributes.
func (c *ngCall) bundlePlans(plans []ng.MediaPlan, to int) {
	for _, st := range c.streams {
		v := st.via[to]
		if v == nil || st.disabled || st.index >= len(plans) || v.index >= len(plans) {
			continue
		}
		p, t := &plans[st.index], plans[v.index]
		p.Addr, p.Port, p.RTCPPort, p.Mux, p.MuxOnly = t.Addr, t.Port, t.RTCPPort, true, true
		p.ICEUfrag, p.ICEPwd, p.Fingerprint, p.Setup = t.ICEUfrag, t.ICEPwd, t.Fingerprint, t.Setup
	}
}

// options are the SDP-wide rewriting options toward side to: the
// BUNDLE group of the m= lines still in it (a rejected one leaves it,
// RFC 8843 section 7.3.3).
func (c *ngCall) options(f *ngFlags, to int) ng.Options {
	o := ng.Options{ReplaceOrigin: f.replaceOrigin}
	if c.bundle[to] != nil {
		for _, st := range c.streams {
			if st.bundled[to] && !st.disabled {
				o.Bundle = append(o.Bundle, st.bmid[to])
			}
		}
	}
	return o
}

// promoteBundle hands stream t's transport on side (its socket there) to
// the first of the streams bundled behind it, when the answerer rejects
// t's m= line but not theirs: the others follow the new transport.
// Called before t is freed, in stream order, so the new transport's
// ICE credentials are made as for any transport.
func (c *ngCall) promoteBundle(t *ngStream, side int) {
	var nt *ngStream
	for _, st := range c.streams {
		if st.via[side] != t || st.disabled {
			continue
		}
		if nt == nil {
			nt = st
			lid := c.legs[side]
			nt.socks[lid], t.socks[lid] = t.socks[lid], ngSocks{}
			nt.via[side] = nil
			continue
		}
		st.via[side] = nt
	}
}

// unionPTs adds b's payload types to a's.
func unionPTs(a, b []uint8) []uint8 {
	for _, pt := range b {
		if !slices.Contains(a, pt) {
			a = append(a, pt)
		}
	}
	return a
}

// remoteOf is where side's m= line says it receives RTP and RTCP. None
// (latched later) for an unspecified address (a browser's c=IN IP4
// 0.0.0.0 before ICE), and for a DTLS side the gateway is an ICE-lite
// agent toward: its remote is the nominated candidate pair's (ice.go).
func remoteOf(st *ngStream, side int, m ng.Media) (rtp, rtcp netip.AddrPort) {
	if m.Addr.IsUnspecified() || (st.dtls[side] && st.ice[side] != nil) {
		return netip.AddrPort{}, netip.AddrPort{}
	}
	return netip.AddrPortFrom(m.Addr, uint16(m.Port)), netip.AddrPortFrom(m.Addr, uint16(m.RTCPPort))
}
