package gateway

import "encoding/binary"

// BUNDLE (RFC 9143): a WebRTC endpoint sends the m= lines of one
// transport (audio and video) over one 5-tuple, one ICE and one DTLS
// association. In mediaedge each m= line is a session; their WebRTC legs
// share the first leg's dedicated socket (sock.bundle) and its DTLS
// transport (dtlsBundle), each with its own SRTP contexts of the same
// exported keys. Packets are routed to a leg by SSRC, and a new stream by
// payload type. Everything here runs on the worker that owns the legs.

// bundleLegs puts DTLS leg l on primary's socket and DTLS transport:
// l's own socket is closed, l takes primary's ICE credentials and remote,
// and routes the payload types pts (primary's are primaryPTs). Both
// sessions must be on this worker. The socket stays open until the last
// of its legs ends.
func (w *worker) bundleLegs(primary, l *leg, primaryPTs, pts []uint8) error {
	so := primary.rtp
	if so == nil || so.owner != primary || l == primary || l.rtp == nil || l.rtp.dm != nil || l.rtp.owner != l {
		return errBundle
	}
	if err := w.dtlsBundle(primary, l); err != nil {
		return err
	}
	old := l.rtp
	w.sys.unregister(old)
	w.g.closeSock(old)
	l.rtp, l.rtcp = so, so
	so.bundle = append(so.bundle, l)
	l.mux = true
	l.ice = primary.ice
	l.remote, l.remoteRTCP, l.latched = primary.remote, primary.remote, primary.latched
	primary.bundlePTs = primaryPTs
	l.bundlePTs = pts
	return nil
}

// unbundle takes l off BUNDLE socket so and reports whether other legs
// keep the socket (then it must stay open): a bundled leg leaves the
// list; an owner hands the socket to the first bundled leg.
func unbundle(so *sock, l *leg) bool {
	if len(so.bundle) == 0 {
		return false
	}
	if so.owner == l {
		so.owner = so.bundle[0]
		so.bundle = so.bundle[1:]
		if len(so.bundle) == 0 {
			so.bundle = nil
		}
		return true
	}
	for i, b := range so.bundle {
		if b == l {
			so.bundle = append(so.bundle[:i], so.bundle[i+1:]...)
			return true
		}
	}
	return true
}

// bundleLeg returns the leg of a BUNDLE socket a packet belongs to: the
// leg that knows its SSRC, else (RTP) the leg whose payload types carry
// it, else (an RTCP report) the leg whose stream its first report block
// is about, else the owner.
func bundleLeg(s *sock, pkt []byte, rtcp bool) *leg {
	ssrc := ssrcOf(pkt, rtcp)
	if s.owner.inSSRC.find(ssrc) >= 0 {
		return s.owner
	}
	for _, l := range s.bundle {
		if l.inSSRC.find(ssrc) >= 0 {
			return l
		}
	}
	if !rtcp {
		pt := pkt[1] & 0x7f
		if hasPT(s.owner.bundlePTs, pt) {
			return s.owner
		}
		for _, l := range s.bundle {
			if hasPT(l.bundlePTs, pt) {
				return l
			}
		}
		return s.owner
	}
	// SR: the first report block follows 20 bytes of sender info; RR: at
	// once. The block's SSRC is a stream the gateway sends on one leg.
	off := 8
	if pkt[1] == 200 {
		off = 28
	}
	if len(pkt) >= off+4 {
		about := binary.BigEndian.Uint32(pkt[off:])
		for _, l := range s.bundle {
			if l.outSSRC.find(about) >= 0 {
				return l
			}
		}
	}
	return s.owner
}

func hasPT(pts []uint8, pt uint8) bool {
	for _, p := range pts {
		if p == pt {
			return true
		}
	}
	return false
}

// inBundle reports whether o shares a BUNDLE socket with other legs.
func inBundle(o *leg) bool {
	so := o.rtp
	return so != nil && so.owner != nil && (len(so.bundle) > 0 || so.owner != o)
}

// bundleSSRCTaken reports whether another leg on o's BUNDLE socket sends
// ssrc already. Two legs of a BUNDLE share master keys: the same SSRC on
// two of them would reuse a keystream, so such a packet is dropped.
func bundleSSRCTaken(o *leg, ssrc uint32) bool {
	so := o.rtp
	if so.owner != o && so.owner.outSSRC.find(ssrc) >= 0 {
		return true
	}
	for _, l := range so.bundle {
		if l != o && l.outSSRC.find(ssrc) >= 0 {
			return true
		}
	}
	return false
}
