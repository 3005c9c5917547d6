package gateway

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// rawOut is a worker's raw sending on one leg: the datagrams of a round
// that leave their socket alone (a dedicated port carries one packet per
// round at 50 packets a second) are copied into a udpbatch.RawSender with
// their socket's address and port as source, and leave together in one
// sendmmsg at the end of the round, instead of one sendmmsg each. Runs of
// two or more datagrams from one socket keep their socket's path, with UDP
// GSO. The raw socket carries the leg's mark and send buffer, like the
// leg's sockets.
//
// A leg whose sockets are bound to an IPv6 or unspecified address, a
// datagram too long for one 1,500-byte packet, or a process without
// CAP_NET_RAW keep the socket's path; so does every datagram while a
// policy-routing rule selects on protocol or ports (ipv4PortRules).
// Owned by the worker goroutine.
type rawOut struct {
	rs      *udpbatch.RawSender // nil: not opened (yet)
	off     bool                // opening failed: never try again
	blocked bool                // an ip rule selects on protocol or ports
	// limit is the longest payload sent raw: RawMaxPayload, lowered when
	// the kernel refuses a datagram as longer than its route's MTU.
	limit  int
	slots  []pending // the socket and leg of each datagram in rs
	failFn func(i int, err unix.Errno)
}

// sendRaw queues p, a datagram that leaves its socket alone, for raw
// sending and reports whether it did; if not, the caller sends it from its
// socket.
func (w *worker) sendRaw(p *pending) bool {
	s := &w.sys
	r := &s.raw[p.s.leg]
	if r.rs == nil && (r.off || !w.openRaw(p.s.leg)) {
		return false
	}
	if r.blocked || p.n > r.limit {
		return false
	}
	if r.rs.Len() == r.rs.Cap() {
		w.sendRawBatch(r)
	}
	if r.rs.Add(p.s.local, p.dst, s.bufs[p.buf][:p.n]) != nil {
		// An IPv6 or unspecified source, or a destination of the other
		// family: the socket sends it, or refuses it and counts it.
		return false
	}
	r.slots = append(r.slots, *p)
	return true
}

// openRaw opens leg id's raw sender with the leg's mark and send buffer;
// when that fails (no CAP_NET_RAW) the leg never tries again.
func (w *worker) openRaw(id legID) bool {
	r := &w.sys.raw[id]
	lc := legConfig(w.cfg, id)
	rs, err := udpbatch.OpenRaw(sockopt.Options{SendBuffer: int(lc.SendBuffer), Mark: uint32(lc.Mark)}, len(w.sys.bufs))
	if err != nil {
		r.off = true
		w.g.log.Info("raw sending unavailable; one system call per datagram of a dedicated port",
			"worker", w.id, "leg", id.String(), "err", err)
		return false
	}
	r.rs, r.limit = rs, udpbatch.RawMaxPayload
	r.slots = make([]pending, 0, rs.Cap())
	r.failFn = func(i int, err unix.Errno) { w.rawFailed(r, i, err) }
	w.checkRawRules()
	return true
}

// ipv4PortRules reports whether an IPv4 policy-routing rule selects on the
// IP protocol or on ports (ip rule ... ipproto udp dport R, as policy's
// match: udp and port-only media write). The kernel looks up the route of
// an IP_HDRINCL packet with protocol IPPROTO_RAW and no ports, so such a
// rule never matches a raw packet: it could take another route than its
// socket's packets would.
func ipv4PortRules() (bool, error) {
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		return false, err
	}
	for _, r := range rules {
		if r.IPProto != 0 || r.Sport != nil || r.Dport != nil {
			return true, nil
		}
	}
	return false, nil
}

// checkRawRules pauses raw sending while ipv4PortRules finds a rule (or
// cannot tell) and resumes it when none is left; housekeeping calls it
// every second.
func (w *worker) checkRawRules() {
	if w.sys.raw[legInternal].rs == nil && w.sys.raw[legCloud].rs == nil {
		return
	}
	found, err := ipv4PortRules()
	blocked := found || err != nil
	for id := range w.sys.raw {
		r := &w.sys.raw[id]
		if r.rs == nil || r.blocked == blocked {
			continue
		}
		r.blocked = blocked
		if blocked {
			w.g.log.Info("raw sending paused: a policy-routing rule selects on protocol or ports",
				"worker", w.id, "leg", legID(id).String(), "err", err)
		} else {
			w.g.log.Info("raw sending resumed", "worker", w.id, "leg", legID(id).String())
		}
	}
}

// flushRaw sends the raw batches of both legs.
func (w *worker) flushRaw() {
	for id := range w.sys.raw {
		if r := &w.sys.raw[id]; r.rs != nil && r.rs.Len() > 0 {
			w.sendRawBatch(r)
		}
	}
}

func (w *worker) sendRawBatch(r *rawOut) {
	n := r.rs.Len()
	lost := r.rs.Send(r.failFn)
	w.stats.rawSends.Add(uint64(n - lost))
	clear(r.slots)
	r.slots = r.slots[:0]
}

// rawFailed handles datagram i of r's batch, which the kernel refused with
// err: a datagram longer than its route's MTU allows (EMSGSIZE: the
// kernel does not fragment raw packets) goes through its socket, which
// fragments as UDP does, and so do longer ones from now on; any other
// refusal counts against the datagram's leg, as on the socket's path.
func (w *worker) rawFailed(r *rawOut, i int, err unix.Errno) {
	p := &r.slots[i]
	s := &w.sys
	if err != unix.EMSGSIZE || p.s.fd >= len(s.socks) || s.socks[p.s.fd] != p.s {
		// Refused, or its socket closed since (its session ended in the
		// round): the descriptor may be another socket's by now.
		w.sendFailed(p.s, p.leg, 1)
		return
	}
	payload := r.rs.Payload(i)
	r.limit = min(r.limit, len(payload)-1)
	s.sbufs = append(s.sbufs, payload)
	s.sdsts = append(s.sdsts, p.dst)
	s.run = r.slots[i : i+1]
	_, _ = s.sd.Send(p.s.fd, p.s.v6, s.sbufs, s.sdsts, s.failFn)
	s.run = nil
	clear(s.sbufs)
	s.sbufs, s.sdsts = s.sbufs[:0], s.sdsts[:0]
}

// applyRawOpts sets leg id's mark and send buffer on its raw sender (a
// reload) and reports whether the kernel refused.
func (w *worker) applyRawOpts(id legID, lc *LegConfig) bool {
	r := &w.sys.raw[id]
	if r.rs == nil {
		return false
	}
	// sockopt leaves a zero mark alone; set it either way.
	err := r.rs.Apply(sockopt.Options{SendBuffer: int(lc.SendBuffer)})
	if merr := r.rs.SetMark(uint32(lc.Mark)); err == nil {
		err = merr
	}
	return err != nil
}

// closeRaw closes the raw senders.
func (s *workerSys) closeRaw() {
	for id := range s.raw {
		if r := &s.raw[id]; r.rs != nil {
			r.rs.Close()
			r.rs = nil
		}
	}
}
