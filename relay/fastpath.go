package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/mediaedge/mediaedge/relay/fastpath"
)

// startFastPath loads and attaches the in-kernel forwarder as
// cfg.FastPath asks. "auto" falls back to user space, saying why once; "on"
// fails the start. The forwarder is closed by closeAll.
func (s *Server) startFastPath() error {
	mode := s.cfg.FastPath
	if mode == "" || mode == FastPathOff {
		return nil
	}
	attach := s.attachFast
	if attach == nil {
		attach = attachFastPath
	}
	f, n, err := attach(s.fastPathAddrs())
	if err != nil {
		if mode == FastPathOn {
			return fmt.Errorf("relay: fast_path is on but the in-kernel fast path cannot start: %w", err)
		}
		s.log.Warn("in-kernel fast path unavailable; relaying in user space", "err", err)
		return nil
	}
	s.fast = f
	f.OnRouteChange(s.retryFast)
	s.log.Info("in-kernel fast path attached", "interfaces", n)
	return nil
}

// fastRetry is the set of allocations with a channel the fast path
// refused for want of a route (fastpath.ErrNoRoute): the route may come
// later (a link up, a route added, a policy rule changed), and then the
// forwarder's route watcher calls retryFast, which offers those channels
// again. Other allocations are not touched, so route changes cost in
// proportion to the refused channels. Safe for concurrent use.
type fastRetry struct {
	mu     sync.Mutex
	allocs map[*alloc]struct{}
}

// set records whether a has channels refused for want of a route.
func (r *fastRetry) set(a *alloc, refused bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, had := r.allocs[a]
	switch {
	case refused && !had:
		if r.allocs == nil {
			r.allocs = map[*alloc]struct{}{}
		}
		r.allocs[a] = struct{}{}
	case !refused && had:
		delete(r.allocs, a)
	}
}

// has reports whether a has channels refused for want of a route.
func (r *fastRetry) has(a *alloc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.allocs[a]
	return ok
}

// list returns the allocations with channels refused for want of a route.
func (r *fastRetry) list() []*alloc {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*alloc, 0, len(r.allocs))
	for a := range r.allocs {
		out = append(out, a)
	}
	return out
}

// retryFast offers the kernel again the channels it refused for want of a
// route, after the forwarder re-resolved its routes (fastpath's route
// watcher, which coalesces bursts of changes). Channels whose route is
// still missing stay in user space until the next change.
func (s *Server) retryFast() {
	for _, a := range s.fastRetry.list() {
		a.mu.Lock()
		before := len(a.fast)
		t := a.table.Load()
		if t == nil || a.ended {
			t = emptyTable
		}
		a.syncFastLocked(t)
		added := len(a.fast) - before
		a.mu.Unlock()
		if added > 0 {
			s.log.Info("fast-path entries added after a route change", "relay", a.advAddr().String(), "channels", added)
		}
	}
}

// fastPathAddrs are the addresses clients and peers reach the relay on:
// UDP listeners and the relay addresses, IPv4 and IPv6.
func (s *Server) fastPathAddrs() []netip.Addr {
	var out []netip.Addr
	for _, l := range s.cfg.Listeners {
		if l.Transport == TransportUDP {
			out = append(out, l.Addr.Addr().Unmap())
		}
	}
	for _, b := range s.bind {
		if b.IsValid() {
			out = append(out, b)
		}
	}
	return out
}

// attachFastPath loads the forwarder and attaches it to loopback (where
// local clients and peers arrive) and to every interface carrying one of
// addrs (every interface for an unspecified address).
func attachFastPath(addrs []netip.Addr) (*fastpath.Forwarder, int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, 0, fmt.Errorf("listing interfaces: %w", err)
	}
	var idx []int
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp != 0 && carries(ifc, addrs) {
			idx = append(idx, ifc.Index)
		}
	}
	f, err := fastpath.New()
	if err != nil {
		return nil, 0, err
	}
	for _, i := range idx {
		if err := f.Attach(i); err != nil {
			_ = f.Close()
			return nil, 0, err
		}
	}
	return f, len(idx), nil
}

func carries(ifc net.Interface, addrs []netip.Addr) bool {
	as, err := ifc.Addrs()
	if err != nil {
		return false
	}
	for _, want := range addrs {
		if want.IsUnspecified() {
			return true
		}
		for _, a := range as {
			if p, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(p.IP); ok && ip.Unmap() == want {
					return true
				}
			}
		}
	}
	return false
}

// fastWantLocked returns the channels of t the kernel may forward: a UDP
// allocation reached over a UDP listener, specific (not wildcard)
// listener and relay addresses, client, listener, relay address and peer
// all IPv4 or all IPv6 (the program never changes the IP version, so an
// RFC 6156 cross-family allocation stays in user space), and per channel
// a permission for its peer that the current policy admits. The entries
// carry the bitrate caps, which the program enforces. The caller holds
// a.mu.
func (a *alloc) fastWantLocked(t *chanTable) []fastpath.Entry {
	s := a.srv
	r := a.route.Load()
	if a.ended || a.udp == nil || r == nil || r.transport != "udp" {
		return nil
	}
	lim := s.limits.Load()
	v4 := r.listener.Addr().Unmap().Is4()
	if r.listener.Addr().IsUnspecified() || a.relayAddr().Addr().IsUnspecified() ||
		r.client.Addr().Unmap().Is4() != v4 || a.relayAddr().Addr().Unmap().Is4() != v4 {
		return nil
	}
	// The user's cap applies where the user-space relay applies it.
	var user string
	var userBitrate uint64
	if a.usr != nil {
		user, userBitrate = a.usr.name, uint64(lim.BitratePerUser)
	}
	var want []fastpath.Entry
	for _, c := range t.chans {
		if ok, denied := t.permitted(c.peer.Addr()); c.denied || !ok || denied || c.peer.Addr().Unmap().Is4() != v4 {
			continue
		}
		want = append(want, fastpath.Entry{
			Client: r.client, Listener: r.listener, Relay: a.relayAddr(), Peer: c.peer,
			Channel: c.num, Mark: s.sock.mark, Bitrate: uint64(lim.BitratePerAllocation),
			User: user, UserBitrate: userBitrate,
		})
	}
	return want
}

// fastEntry is a channel in the kernel and the part of its counters
// already added to the allocation's and the relay's.
type fastEntry struct {
	e    fastpath.Entry
	seen fastpath.Counters
	gen  uint64 // s.fastGen when it was added
}

// addFastLocked adds what the kernel forwarded for fe since the last call
// (c: its counters now) to the allocation's and the relay's counters. The
// caller holds a.mu.
func (a *alloc) addFastLocked(fe *fastEntry, c fastpath.Counters) {
	st := &a.srv.stats
	add := func(d int, p, b uint64) {
		a.packets[d].Add(p)
		a.bytes[d].Add(b)
		st.packets[d].Add(p)
		st.bytes[d].Add(b)
	}
	add(dirToPeer, c.ToPeerPackets-fe.seen.ToPeerPackets, c.ToPeerBytes-fe.seen.ToPeerBytes)
	add(dirToClient, c.ToClientPackets-fe.seen.ToClientPackets, c.ToClientBytes-fe.seen.ToClientBytes)
	st.drops[dropBandwidth].Add(c.ToPeerDropped + c.ToClientDropped - fe.seen.ToPeerDropped - fe.seen.ToClientDropped)
	fe.seen = c
}

// foldFast adds what the kernel forwarded since the last fold to every
// allocation's counters, so that /v1/relay/allocations and the metrics
// include kernel traffic within a housekeeping period (a second), and the
// program's faults to the relay's drops.
func (s *Server) foldFast() {
	if s.fast == nil {
		return
	}
	// Datagrams the program had to drop half way through a rewrite: the
	// kernel could not send them, as a failed send in user space.
	s.stats.drops[dropSendError].Add(s.fast.TakeFaults())
	// One batched read of every entry's counters; per-entry lookups only
	// where the kernel cannot batch (or the read failed).
	snap := &s.fastSnap
	gen := s.fastGen.Load() // entries added later may postdate the read
	batched := s.fast.Snapshot(snap) == nil
	s.mu.Lock()
	as := s.foldAllocs[:0]
	for _, a := range s.allocs {
		as = append(as, a)
	}
	s.mu.Unlock()
	for _, a := range as {
		a.mu.Lock()
		for i := range a.fast {
			e := a.fast[i].e
			if batched {
				// An entry added after the read (or missing from it) waits
				// for the next fold: the read may show an earlier entry of
				// the same key, with other counters.
				if a.fast[i].gen > gen {
					continue
				}
				if c, ok := snap.Counters(e); ok {
					a.addFastLocked(&a.fast[i], c)
				}
			} else if c, err := s.fast.Counters(e); err == nil {
				a.addFastLocked(&a.fast[i], c)
			}
		}
		a.mu.Unlock()
	}
	clear(as)
	s.foldAllocs = as[:0]
}

// syncFastLocked makes the kernel's entries for a match t: entries no
// longer wanted are removed first (their last counters join the
// allocation's), then new ones are added. A channel refused for want of a
// route stays in user space and is offered again after the next route
// change (retryFast); such refusals are logged as warnings while the
// allocation had none, then at debug level, not at every retry. The
// caller holds a.mu.
func (a *alloc) syncFastLocked(t *chanTable) {
	s := a.srv
	if s.fast == nil {
		return
	}
	want := a.fastWantLocked(t)
	kept := a.fast[:0:0]
	for _, fe := range a.fast {
		if slices.Contains(want, fe.e) {
			kept = append(kept, fe)
			continue
		}
		c, err := s.fast.Remove(fe.e)
		if err != nil {
			s.log.Warn("removing a fast-path entry failed", "relay", a.advAddr().String(), "err", err)
			kept = append(kept, fe) // retried at the next rebuild
			continue
		}
		a.addFastLocked(&fe, c)
	}
	noRoute := 0
	for _, e := range want {
		if slices.ContainsFunc(kept, func(fe fastEntry) bool { return fe.e == e }) {
			continue
		}
		if err := s.fast.Add(e); err != nil {
			// Full map or kernel refusal: this channel stays in user space.
			if errors.Is(err, fastpath.ErrNoRoute) {
				noRoute++
				if s.fastRetry.has(a) {
					// Refused before and still no route: logged then.
					s.log.Debug("fast-path entry still without a route", "relay", a.advAddr().String(), "err", err)
					continue
				}
			}
			s.log.Warn("adding a fast-path entry failed", "relay", a.advAddr().String(), "err", err)
			continue
		}
		kept = append(kept, fastEntry{e: e, gen: s.fastGen.Add(1)})
	}
	a.fast = kept
	s.fastRetry.set(a, noRoute > 0)
}
