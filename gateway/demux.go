package gateway

import (
	"net/netip"
)

// demuxOpen finds the leg a datagram on shared socket s belongs to and
// opens it. A known flow (source address and SSRC) goes straight to its
// leg, before and without any trial. A new flow is tried first against
// the leg that owns another flow of the same source, then against the
// keys of the legs that could own it: legs still waiting to latch, legs
// whose remote is src and, for non-symmetric legs, any leg. The first leg
// whose key authenticates the packet owns the flow from then on. Trials
// are budgeted per worker and per source, and sources whose packets keep
// failing are denied trials for a while (see trial.go); a packet over a
// budget is dropped as trial_refused, one from a denied source as
// junk_source. The returned leg is nil when no leg took the packet.
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
	e := d.sources.get(src, w.now)
	if e.denied(w.now, w.trial.epoch) {
		return nil, nil, reasonJunkSource, false
	}
	e.budget.refill(w.now, srcTrialRate, srcTrialBurst)
	w.trial.refill(w.now, workerTrialRate, workerTrialBurst)
	w.stats.trials.Add(1)
	tried := 0
	why := reasonUnknownFlow
	var last *leg
	var moved *leg // a symmetric leg whose peer's stream (SSRC) came from elsewhere
	// cut: a budget ended the passes; starved: the worker's.
	cut, starved := false, false
	// A further stream (or the RTCP) of a source that owns a flow: most
	// likely the same leg's, tried first. It is budgeted like any trial,
	// so that junk sent from (or spoofing) a latched peer's address is
	// denied like any other.
	hint := d.bySrc[src]
	if hint != nil {
		if want := hint.remoteFor(rtcp); !hint.symmetric || !want.IsValid() || want == src {
			if e.budget.tokens < 1 || w.trial.tokens < 1 {
				return nil, nil, reasonTrialRefused, false
			}
			e.budget.tokens--
			w.trial.tokens--
			tried++
			plain, r, ok := w.open(hint, pkt, rtcp, true)
			if ok || r == reasonKeyExpired || r == reasonReplay {
				e.fails = 0
				return hint, plain, r, ok
			}
			if r != reasonAuth {
				why, last = r, hint // e.g. one SSRC too many for its leg
			}
		}
	}
	n := len(d.legs)
	start := 0
	if n > 0 {
		start = d.rot % n
	}
	// Two passes: first the legs that own no flow yet (a new flow most
	// likely starts a session's first stream), then the others (a further
	// stream of a bundle, or a peer that moved). Each starts where the
	// last packet's trials ended.
passes:
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < n; i++ {
			j := start + i
			if j >= n {
				j -= n
			}
			l := d.legs[j]
			if (len(l.flows) == 0) != (pass == 0) || l == hint {
				continue
			}
			if want := l.remoteFor(rtcp); want.IsValid() && want != src && l.symmetric {
				if moved == nil && l.inSSRC.find(ssrc) >= 0 {
					moved = l
				}
				continue
			}
			if tried >= maxTrialCandidates || e.budget.tokens < 1 || w.trial.tokens < 1 {
				cut, starved = true, w.trial.tokens < 1
				d.rot = j
				break passes
			}
			e.budget.tokens--
			w.trial.tokens--
			tried++
			plain, r, ok := w.open(l, pkt, rtcp, true)
			if ok || r == reasonKeyExpired || r == reasonReplay {
				// The key matched: the flow is this leg's (or the packet
				// is not acceptable, as when a known flow sends it).
				e.fails = 0
				return l, plain, r, ok
			}
			if r != reasonAuth {
				why, last = r, l
			}
		}
	}
	if moved != nil {
		return moved, nil, reasonWrongSource, false // the peer moved; symmetric drops it
	}
	if !starved && e.failed(w.now, w.trial.epoch) {
		w.stats.denied.Add(1)
	}
	if last != nil && tried == 1 && !cut {
		return last, nil, why, false
	}
	if cut && why == reasonUnknownFlow {
		why = reasonTrialRefused
	}
	return nil, nil, why, false
}
