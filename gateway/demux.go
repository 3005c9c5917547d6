package gateway

import (
	"net/netip"
)

// demuxOpen finds the leg a datagram on shared socket s belongs to and
// opens it. A known flow (source address and SSRC) goes straight to its
// leg. A new flow is tried against the keys of the legs that could own
// it: legs whose remote is src, legs still waiting to latch, and, for
// non-symmetric legs, any leg. The first leg whose key authenticates the
// packet owns the flow from then on. Trials cost CPU, so they are
// rate-limited per socket; a packet over the limit is dropped as an
// unknown flow. The returned leg is nil when no leg took the packet.
func (w *worker) demuxOpen(s *sock, src netip.AddrPort, pkt []byte, rtcp bool) (*leg, []byte, reason, bool) {
	d := s.dm
	ssrc := ssrcOf(pkt, rtcp)
	if l := d.flows[flowKey{src: src, ssrc: ssrc}]; l != nil {
		if want := l.remoteFor(rtcp); l.symmetric && want.IsValid() && want != src {
			return l, nil, reasonWrongSource, false // the remote was moved (PATCH)
		}
		plain, r, ok := w.open(l, pkt, rtcp, false)
		return l, plain, r, ok
	}
	d.refill(w.now)
	w.stats.trials.Add(1)
	tried := 0
	why := reasonUnknownFlow
	var last *leg
	var moved *leg // a symmetric leg whose peer's stream (SSRC) came from elsewhere
	// Two passes: first the legs that own no flow yet (a new flow most
	// likely starts a session's first stream), then the others (a further
	// stream of a bundle, or a peer that moved).
	for pass := 0; pass < 2; pass++ {
		for _, l := range d.legs {
			if (len(l.flows) == 0) != (pass == 0) {
				continue
			}
			if want := l.remoteFor(rtcp); want.IsValid() && want != src && l.symmetric {
				if moved == nil && l.inSSRC.find(ssrc) >= 0 {
					moved = l
				}
				continue
			}
			if tried >= maxTrialCandidates || !d.take() {
				pass = 2
				break
			}
			tried++
			plain, r, ok := w.open(l, pkt, rtcp, true)
			if ok {
				return l, plain, 0, true
			}
			if r == reasonKeyExpired || r == reasonReplay {
				// The key matched: the flow is this leg's, the packet is
				// not acceptable.
				return l, nil, r, false
			}
			if r != reasonAuth {
				why, last = r, l
			}
		}
	}
	if moved != nil {
		return moved, nil, reasonWrongSource, false // the peer moved; symmetric drops it
	}
	if last != nil && tried == 1 {
		return last, nil, why, false
	}
	return nil, nil, why, false
}
