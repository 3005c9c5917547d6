package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// egressKey is what a direction's interface depends on: where it sends,
// from where, with which mark.
type egressKey struct {
	dst, src netip.Addr
	mark     uint32
}

// toPeer and toClient are the keys of e's two directions.
func (e Entry) toPeer() egressKey {
	return egressKey{dst: e.Peer.Addr().Unmap(), src: e.Relay.Addr().Unmap(), mark: e.Mark}
}

func (e Entry) toClient() egressKey {
	return egressKey{dst: e.Client.Addr().Unmap(), src: e.Listener.Addr().Unmap(), mark: e.Mark}
}

// egressSlot is one index of the program's egress array, shared by the
// entries that send with the same key.
type egressSlot struct {
	slot uint32
	refs int
	oif  uint32 // what the array holds; 0: no route
}

// maxSlots is the egress array's size (max_entries in turnfwd.c).
const maxSlots = 262144

// holdEgressLocked returns the slot for k, resolving its interface when
// it is new. The caller holds f.mu.
func (f *Forwarder) holdEgressLocked(k egressKey, oif uint32) (uint32, error) {
	if s := f.routes[k]; s != nil {
		s.refs++
		return s.slot, nil
	}
	var slot uint32
	switch {
	case len(f.freeSlots) > 0:
		slot = f.freeSlots[len(f.freeSlots)-1]
		f.freeSlots = f.freeSlots[:len(f.freeSlots)-1]
	case f.nextSlot < maxSlots:
		slot = f.nextSlot
		f.nextSlot++
	default:
		return 0, errors.New("fastpath: no free egress slot")
	}
	if err := f.objs.Egress.Update(slot, oif, ebpf.UpdateAny); err != nil {
		f.freeSlots = append(f.freeSlots, slot)
		return 0, fmt.Errorf("fastpath: setting egress: %w", err)
	}
	f.routes[k] = &egressSlot{slot: slot, refs: 1, oif: oif}
	return slot, nil
}

// releaseEgressLocked undoes holdEgressLocked. The caller holds f.mu.
func (f *Forwarder) releaseEgressLocked(k egressKey) {
	s := f.routes[k]
	if s == nil {
		return
	}
	if s.refs--; s.refs > 0 {
		return
	}
	delete(f.routes, k)
	_ = f.objs.Egress.Update(s.slot, uint32(0), ebpf.UpdateAny)
	f.freeSlots = append(f.freeSlots, s.slot)
}

// reroute resolves every direction's interface again, as after a change
// of routes, rules or links (which the forwarder watches for itself; see
// watchRoutes). A direction that lost its route goes to user space until
// it has one again. It returns how many interfaces changed.
func (f *Forwarder) reroute() int {
	// Resolve without f.mu: thousands of route lookups must not hold up
	// Add and Remove. A key added meanwhile was resolved by its Add.
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0
	}
	keys := make([]egressKey, 0, len(f.routes))
	for k := range f.routes {
		keys = append(keys, k)
	}
	f.mu.Unlock()
	oifs := make([]uint32, len(keys))
	for i, k := range keys {
		if oif, err := f.egress(k.dst, k.src, k.mark); err == nil {
			oifs[i] = oif
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0
	}
	n := 0
	for i, k := range keys {
		s := f.routes[k]
		if s == nil || s.oif == oifs[i] {
			continue
		}
		if err := f.objs.Egress.Update(s.slot, oifs[i], ebpf.UpdateAny); err != nil {
			continue // kept; retried at the next change
		}
		s.oif = oifs[i]
		n++
	}
	return n
}

// Route changes are batched: the forwarder resolves again once the
// routing messages have paused for routeQuiet, and at the latest
// routeLatest after the first.
const (
	routeQuiet  = 50 * time.Millisecond
	routeLatest = 500 * time.Millisecond
)

// subscribeRoutes opens a netlink socket, in the calling thread's network
// namespace, that hears of every change of routes, rules and links.
func subscribeRoutes() (*nl.NetlinkSocket, error) {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE,
		unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE,
		unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE, unix.RTNLGRP_LINK)
	if err != nil {
		return nil, fmt.Errorf("fastpath: subscribing to route changes: %w", err)
	}
	// A receive timeout lets the reader see done: closing a netlink
	// socket does not wake a thread blocked in recvfrom.
	tv := unix.NsecToTimeval(int64(routeQuiet))
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, fmt.Errorf("fastpath: subscribing to route changes: %w", err)
	}
	return s, nil
}

// watchRoutes calls reroute, then the OnRouteChange function, after
// routing changes until done is closed; it closes s and exits then. Its owner is the Forwarder (New starts it,
// Close stops and waits for it).
func (f *Forwarder) watchRoutes(s *nl.NetlinkSocket, done <-chan struct{}, exited chan<- struct{}) {
	defer close(exited)
	defer s.Close()
	var first, last time.Time
	for {
		select {
		case <-done:
			return
		default:
		}
		msgs, _, err := s.Receive()
		now := time.Now()
		switch {
		case err == nil && len(msgs) > 0, errors.Is(err, unix.ENOBUFS):
			// ENOBUFS: messages were lost; something changed.
			if first.IsZero() {
				first = now
			}
			last = now
		case err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			time.Sleep(routeQuiet) // an unexpected error: do not spin
		}
		if !first.IsZero() && (now.Sub(last) >= routeQuiet || now.Sub(first) >= routeLatest) {
			first, last = time.Time{}, time.Time{}
			f.reroute()
			if fn := f.onRoute.Load(); fn != nil && *fn != nil {
				(*fn)()
			}
		}
	}
}
