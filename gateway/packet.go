package gateway

import (
	"encoding/binary"
	"net/netip"
)

// Buffer sizes of the data path. Every receive buffer is bufSize bytes;
// the kernel may fill maxPacket of them, which leaves room for
// re-encryption to grow a packet in place (a longer tag or an MKI on the
// other leg).
const (
	bufSize   = 2048
	maxPacket = bufSize - maxOverhead
)

// isRTCP tells RTCP from RTP on an rtcp-mux socket (RFC 5761 section 4):
// RTCP packet types 192-223 put 64-95 in the low seven bits of the second
// byte, where RTP has its marker bit and payload type; RTP payload types
// 64-95 are not used with rtcp-mux for this reason.
func isRTCP(pkt []byte) bool {
	pt := pkt[1] & 0x7f
	return pt >= 64 && pt <= 95
}

// ssrcOf returns the SSRC of an RTP packet or the sender SSRC of an RTCP
// packet; the caller has checked the length.
func ssrcOf(pkt []byte, rtcp bool) uint32 {
	if rtcp {
		return binary.BigEndian.Uint32(pkt[4:8])
	}
	return binary.BigEndian.Uint32(pkt[8:12])
}

// minLen is the shortest datagram worth looking at: an RTP header, or an
// RTCP header with its SSRC.
func minLen(rtcp bool) int {
	if rtcp {
		return 8
	}
	return 12
}

// handle processes one datagram that arrived on s from src; buf[:n] holds
// it and len(buf) is bufSize. It authenticates and decrypts the packet
// with the keys of the leg it belongs to, re-encrypts it in place for the
// session's other leg and returns the socket to send buf[:m] from and the
// destination, with the leg it is sent on. A nil socket means the packet
// was dropped (and counted).
// Called only by s's worker.
func (w *worker) handle(s *sock, src netip.AddrPort, buf []byte, n int) (*sock, *leg, netip.AddrPort, int) {
	if s.owner != nil && s.owner.ice != nil && isSTUN(buf[:n]) {
		return w.stunCheck(s, src, buf, n) // ice.go
	}
	if s.owner != nil && s.owner.dtls != nil && n > 0 && classify(buf[:n]) == kindDTLS {
		w.dtlsIntake(s.owner, src, buf[:n]) // dtlsworker.go
		return nil, nil, netip.AddrPort{}, 0
	}
	if n < 2 || n > maxPacket || buf[0]>>6 != 2 {
		w.dropOn(s, reasonMalformed)
		return nil, nil, netip.AddrPort{}, 0
	}
	pkt := buf[:n]
	rtcp := s.rtcpOnly || isRTCP(pkt)
	if n < minLen(rtcp) {
		w.dropOn(s, reasonMalformed)
		return nil, nil, netip.AddrPort{}, 0
	}
	var (
		l     *leg
		plain []byte
		r     reason
		ok    bool
	)
	if s.owner != nil {
		l = s.owner
		if want := l.remoteFor(rtcp); l.symmetric && want.IsValid() && want != src {
			w.drop(l, reasonWrongSource)
			return nil, nil, netip.AddrPort{}, 0
		}
		plain, r, ok = w.open(l, pkt, rtcp, false)
	} else {
		l, plain, r, ok = w.demuxOpen(s, src, pkt, rtcp)
		if l == nil {
			w.dropOn(s, r)
			return nil, nil, netip.AddrPort{}, 0
		}
	}
	if !ok {
		w.drop(l, r)
		return nil, nil, netip.AddrPort{}, 0
	}
	if l.bundle != nil {
		m := l.bundle.route(l, plain, rtcp) // ngbundle.go
		if m == nil {
			w.drop(l, reasonUnknownFlow)
			return nil, nil, netip.AddrPort{}, 0
		}
		l = m
	}
	w.accepted(l, s, src, pkt, rtcp)
	return w.forward(l.peer(), plain, rtcp)
}

// open authenticates and decrypts pkt (in place) with l's inbound keys and
// returns the plain packet, which shares pkt's buffer. With trial set (a
// shared socket trying the legs that might own a new flow) a failure
// leaves pkt intact.
func (w *worker) open(l *leg, pkt []byte, rtcp bool, trial bool) ([]byte, reason, bool) {
	ssrc := ssrcOf(pkt, rtcp)
	if !l.inSSRC.room(ssrc, w.cfg.MaxSSRCs) {
		return nil, reasonSSRCLimit, false
	}
	if l.plain {
		if rtcp {
			if err := w.rhdr.Unmarshal(pkt); err != nil {
				return nil, reasonMalformed, false
			}
		} else if _, err := w.hdr.Unmarshal(pkt); err != nil {
			return nil, reasonMalformed, false
		}
		return pkt, 0, true
	}
	w.expireInbound(l)
	if len(l.in) == 0 {
		if l.dtls != nil {
			return nil, reasonNoKey, false // the handshake has not keyed the leg yet
		}
		return nil, reasonAuth, false
	}
	// Candidate keys: the key that worked last, then the others; a key
	// with an MKI only when the packet carries that MKI (RFC 3711 section
	// 3.1), so that with MKIs a packet costs one authentication.
	var cands [maxKeyParams * 3]*keyState
	nc := 0
	consider := func(k *keyState) {
		if m := k.mk.MKI; m != nil {
			off := k.mkiOffsetRTP(len(pkt))
			if rtcp {
				off = k.mkiOffsetRTCP(len(pkt))
			}
			if off < minLen(rtcp) || string(pkt[off:off+len(m)]) != string(m) {
				return
			}
		}
		if nc < len(cands) {
			cands[nc] = k
			nc++
		}
	}
	if l.inHint != nil {
		consider(l.inHint)
	}
	for _, k := range l.in {
		if k != l.inHint {
			consider(k)
		}
	}
	if nc == 0 {
		return nil, reasonAuth, false
	}
	why := reasonAuth
	for i := 0; i < nc; i++ {
		k := cands[i]
		ctx, err := k.context()
		if err != nil {
			return nil, reasonMalformed, false
		}
		// AES-CM suites verify the tag before decrypting, so in place is
		// safe; AES-GCM clears its output on failure, so when another
		// key may still be tried it decrypts into scratch.
		inPlace := !k.suite.AEAD || (!trial && i == nc-1)
		dst := pkt
		if !inPlace {
			dst = w.scratch
		}
		var out []byte
		if rtcp {
			out, err = ctx.DecryptRTCP(dst, pkt, &w.rhdr)
		} else {
			out, err = ctx.DecryptRTP(dst, pkt, &w.hdr)
		}
		if err != nil {
			if r := dropReason(err); r != reasonAuth {
				why = r
			}
			continue
		}
		if !inPlace {
			out = pkt[:copy(pkt, out)]
		}
		if rtcp {
			k.rtcp++
		} else {
			k.rtp++
		}
		l.inHint = k
		if k.lifetime != 0 && (k.rtp > k.lifetime || k.rtcp > k.lifetime) {
			return nil, reasonKeyExpired, false
		}
		return out, 0, true
	}
	return nil, why, false
}

// accepted records an authenticated packet: counters, liveness, SSRC, and
// latching of the remote address, which only ever happens here.
func (w *worker) accepted(l *leg, s *sock, src netip.AddrPort, pkt []byte, rtcp bool) {
	if rtcp {
		l.c.RTCPIn++
	} else {
		l.c.PacketsIn++
	}
	l.c.BytesIn += uint64(len(pkt))
	w.stats.in(l.id, len(pkt))
	l.s.lastAuth = w.now
	l.lastPacket = w.wall
	ssrc := ssrcOf(pkt, rtcp)
	l.inSSRC.note(ssrc, binary.BigEndian.Uint16(pkt[2:4]), w.cfg.MaxSSRCs)
	if l.via != nil {
		// A bundled leg: the transport leg latches, and stays alive as
		// long as any m= line of the bundle carries packets.
		l = l.via
		l.s.lastAuth = w.now
	}
	if !l.remoteFor(rtcp).IsValid() {
		if rtcp && !l.mux {
			l.remoteRTCP = src
		} else {
			l.remote = src
		}
		l.latched = true
		w.latched(l, src, rtcp)
	}
	if s.dm != nil {
		fk := flowKey{src: src, ssrc: ssrc}
		if s.dm.flows[fk] == nil && len(l.flows) < 2*w.cfg.MaxSSRCs {
			s.dm.learn(l, fk)
		}
	}
}

// forward re-encrypts plain for leg o and returns where to send it.
func (w *worker) forward(o *leg, plain []byte, rtcp bool) (*sock, *leg, netip.AddrPort, int) {
	// t is where o's packets leave from and the keys they take: o's own,
	// or with BUNDLE its transport leg's (ngbundle.go).
	t := o.transport()
	if t != o && !live(t) {
		w.drop(o, reasonNoRemote) // the bundle's transport ended
		return nil, nil, netip.AddrPort{}, 0
	}
	dst := t.remoteFor(rtcp)
	if !dst.IsValid() && rtcp && !o.mux && o.remote.IsValid() {
		// No RTCP address given or learned yet: RFC 3550's convention,
		// the RTP port plus one.
		dst = netip.AddrPortFrom(o.remote.Addr(), o.remote.Port()+1)
	}
	if !dst.IsValid() {
		w.drop(o, reasonNoRemote)
		return nil, nil, netip.AddrPort{}, 0
	}
	out := plain
	if !o.plain {
		if t.out == nil {
			w.drop(o, reasonNoKey) // a DTLS leg before its handshake
			return nil, nil, netip.AddrPort{}, 0
		}
		k := w.outKey(t)
		if k == nil {
			w.drop(o, reasonKeyExhausted)
			return nil, nil, netip.AddrPort{}, 0
		}
		ctx, err := k.context()
		if err != nil {
			w.drop(o, reasonMalformed)
			return nil, nil, netip.AddrPort{}, 0
		}
		if rtcp {
			out, err = ctx.EncryptRTCP(plain, plain, &w.rhdr)
		} else {
			out, err = ctx.EncryptRTP(plain, plain, &w.hdr)
		}
		if err != nil {
			// pion refuses RFC 3711's hard limits (2^48 / 2^31) and
			// header extensions it cannot protect.
			w.drop(o, reasonKeyExhausted)
			return nil, nil, netip.AddrPort{}, 0
		}
		if rtcp {
			k.rtcp++
		} else {
			k.rtp++
			o.outSSRC.note(w.hdr.SSRC, w.hdr.SequenceNumber, w.cfg.MaxSSRCs)
		}
		w.afterProtect(t, k)
	} else if !rtcp {
		o.outSSRC.note(ssrcOf(plain, false), binary.BigEndian.Uint16(plain[2:4]), w.cfg.MaxSSRCs)
	}
	if rtcp {
		o.c.RTCPOut++
	} else {
		o.c.PacketsOut++
	}
	o.c.BytesOut += uint64(len(out))
	w.stats.out(o.id, len(out))
	return t.sockFor(rtcp), o, dst, len(out)
}

// drop counts a dropped packet on leg l.
func (w *worker) drop(l *leg, r reason) {
	l.c.count(r)
	w.stats.drop(l.id, r)
}

// dropOn counts a packet that could not be tied to a leg of s.
func (w *worker) dropOn(s *sock, r reason) {
	if s.owner != nil {
		w.drop(s.owner, r)
		return
	}
	w.stats.drop(s.leg, r)
}
