package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Forwarder owns one loaded copy of the turnfwd program, its maps (channel
// entries, egress interfaces, token buckets) and the TC ingress
// attachments, and one goroutine that follows routing changes in the
// network namespace New ran in. It is safe for concurrent use; Close stops
// the goroutine, detaches and frees everything, and is idempotent.
//
// Ownership: attachments are tcx links held only by this process's file
// descriptors and never pinned, so when the process ends for any reason,
// SIGKILL included, the kernel detaches the program and frees the maps; a
// restart therefore always finds exactly its own set. On kernels without
// tcx the clsact fallback's filter outlives the process, and the next
// Attach replaces it (fixed priority and handle).
type Forwarder struct {
	// set in New, never changed
	objs turnfwdObjects

	// attachTCX is link.AttachTCX; tests stand in a refusal to exercise
	// the clsact fallback. Set in New, never changed.
	attachTCX func(link.TCXOptions) (link.Link, error)
	// egress resolves the interface a datagram from src to dst with
	// mark leaves by (routeEgress on a netlink handle in the namespace
	// New ran in); tests that never attach stand in a fixed answer.
	egress func(dst, src netip.Addr, mark uint32) (uint32, error)
	nl     *netlink.Handle

	mu     sync.Mutex           // guards the following
	detach map[int]func() error // by ifindex
	closed bool
	// caps counts the entries sharing each capped allocation's buckets
	// (by relay address) and the bitrate they were made for; userCaps
	// the same for users, whose bucket pairs are numbered (a base of
	// userBucketBase + 2n, n from freeUsers or nextUser).
	caps      map[netip.AddrPort]capUse
	userCaps  map[string]capUse
	freeUsers []uint32
	nextUser  uint32
	// routes are the egress slots in use, freeSlots those released and
	// nextSlot the first never used.
	routes    map[egressKey]*egressSlot
	freeSlots []uint32
	nextSlot  uint32
	// faultsSeen is the program's fault count at the last TakeFaults.
	faultsSeen uint64

	// done stops watchRoutes, which closes exited when it has. Set in
	// New, never changed.
	done, exited chan struct{}
	// onRoute is called by watchRoutes after each batch of routing
	// changes (OnRouteChange); nil: none.
	onRoute atomic.Pointer[func()]
}

// New loads the program and its maps into the kernel; it attaches nothing.
// Without CAP_BPF/CAP_NET_ADMIN, or on a kernel without BPF, the error wraps
// ErrUnsupported.
func New() (*Forwarder, error) {
	var objs turnfwdObjects
	if err := loadTurnfwdObjects(&objs, nil); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, errPerm) {
			return nil, fmt.Errorf("%w: loading program: %w", ErrUnsupported, err)
		}
		return nil, fmt.Errorf("fastpath: loading program: %w", err)
	}
	// The handle's sockets live in this thread's network namespace: routes
	// are looked up where the program is attached, whichever thread adds.
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		_ = objs.Close()
		return nil, fmt.Errorf("fastpath: opening netlink: %w", err)
	}
	sub, err := subscribeRoutes()
	if err != nil {
		nl.Close()
		_ = objs.Close()
		return nil, err
	}
	f := &Forwarder{
		objs: objs, attachTCX: link.AttachTCX, nl: nl,
		detach: make(map[int]func() error), caps: make(map[netip.AddrPort]capUse),
		userCaps: make(map[string]capUse),
		routes:   make(map[egressKey]*egressSlot),
		done:     make(chan struct{}), exited: make(chan struct{}),
	}
	f.egress = func(dst, src netip.Addr, mark uint32) (uint32, error) { return routeEgress(nl, dst, src, mark) }
	go f.watchRoutes(sub, f.done, f.exited)
	return f, nil
}

// routeEgress asks the kernel's routing (`ip route get DST from SRC mark
// MARK`, policy rules included) which interface a datagram leaves by:
// loopback's index for a local destination.
func routeEgress(h *netlink.Handle, dst, src netip.Addr, mark uint32) (uint32, error) {
	rs, err := h.RouteGetWithOptions(dst.Unmap().AsSlice(), &netlink.RouteGetOptions{SrcAddr: src.Unmap().AsSlice(), Mark: mark})
	if err != nil {
		// ENETUNREACH (no route), EHOSTUNREACH, EACCES (prohibit) and
		// EINVAL (blackhole) are how RTM_GETROUTE refuses.
		return 0, fmt.Errorf("%w: route to %s from %s: %w", ErrNoRoute, dst, src, err)
	}
	if len(rs) == 0 {
		return 0, fmt.Errorf("%w: route to %s from %s: none", ErrNoRoute, dst, src)
	}
	switch r := rs[0]; r.Type {
	case unix.RTN_LOCAL:
		return loopbackIfindex, nil
	case unix.RTN_UNICAST:
		if r.LinkIndex <= 0 {
			return 0, fmt.Errorf("%w: route to %s from %s: no interface", ErrNoRoute, dst, src)
		}
		return uint32(r.LinkIndex), nil
	default:
		// Blackhole, unreachable, prohibit: user space meets the same
		// refusal when it sends.
		return 0, fmt.Errorf("%w: route to %s from %s: type %d", ErrNoRoute, dst, src, r.Type)
	}
}

// OnRouteChange makes the forwarder call fn after each batch of changes
// of routes, rules or links, once it has resolved its entries' interfaces
// again: the owner offers then the entries Add refused with ErrNoRoute
// again. Batches are coalesced (routeQuiet after the last message,
// routeLatest after the first), so fn runs at most a few times a second.
// fn runs on the forwarder's route watcher, never after Close returns,
// and must not call Close; Add and Remove are fine. Safe for concurrent
// use; a later call replaces fn.
func (f *Forwarder) OnRouteChange(fn func()) {
	f.onRoute.Store(&fn)
}

// loopbackIfindex is loopback's interface index in every namespace
// (LOOPBACK_IFINDEX in the kernel).
const loopbackIfindex = 1

// Attach hooks the program to TC ingress of the interface with index
// ifindex: a tcx link on Linux 6.6 and later, otherwise a clsact filter
// that replaces any stale one of an earlier run. Attaching twice is a no-op.
func (f *Forwarder) Attach(ifindex int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	if _, ok := f.detach[ifindex]; ok {
		return nil
	}
	l, err := f.attachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   f.objs.TurnfwdIngress,
		Attach:    ebpf.AttachTCXIngress,
	})
	switch {
	case err == nil:
		f.detach[ifindex] = l.Close
		return nil
	case !errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("fastpath: attaching tcx to ifindex %d: %w", ifindex, err)
	}
	// No tcx (kernel before 6.6): fall back to a clsact filter.
	d, err := attachClsact(ifindex, f.objs.TurnfwdIngress)
	if err != nil {
		return fmt.Errorf("fastpath: attaching to ifindex %d (clsact, no tcx): %w", ifindex, err)
	}
	f.detach[ifindex] = d
	return nil
}

// Add makes e forwardable in both directions, replacing an entry with the
// same keys (its counters restart at zero). The interface each direction
// leaves by is resolved now, from the routing tables with e.Mark; an
// entry whose destination has no route is refused (user space meets the
// same error when it sends).
func (f *Forwarder) Add(e Entry) error {
	if !e.valid() {
		return errInvalidEntry
	}
	// The egress of each direction is resolved now, with the mark, so
	// that policy routing (split tunnelling) picks it as for user space.
	toPeer, err := f.egress(e.Peer.Addr(), e.Relay.Addr(), e.Mark)
	if err != nil {
		return err
	}
	toClient, err := f.egress(e.Client.Addr(), e.Listener.Addr(), e.Mark)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	peerSlot, err := f.holdEgressLocked(e.toPeer(), toPeer)
	if err != nil {
		return err
	}
	clientSlot, err := f.holdEgressLocked(e.toClient(), toClient)
	if err != nil {
		f.releaseEgressLocked(e.toPeer())
		return err
	}
	undo := func() {
		f.releaseEgressLocked(e.toPeer())
		f.releaseEgressLocked(e.toClient())
	}
	userBase, err := f.holdCapLocked(e)
	if err != nil {
		undo()
		return err
	}
	// The peer->client half goes in first, so that a reply never finds the
	// client->peer half without its return path.
	if err := f.objs.P2c.Update(e.p2cKey(), e.p2cVal(clientSlot, userBase), ebpf.UpdateAny); err != nil {
		f.releaseCapLocked(e)
		undo()
		return fmt.Errorf("fastpath: adding peer entry: %w", err)
	}
	if err := f.objs.C2p.Update(e.c2pKey(), e.c2pVal(peerSlot, userBase), ebpf.UpdateAny); err != nil {
		_ = f.objs.P2c.Delete(e.p2cKey())
		f.releaseCapLocked(e)
		undo()
		return fmt.Errorf("fastpath: adding client entry: %w", err)
	}
	return nil
}

// Remove stops forwarding e in the kernel (later packets reach user space)
// and returns what it forwarded since Add: each half is read and deleted in
// one step, so no packet is forwarded without being counted. Removing an
// entry that is not there is not an error and returns zero counters.
func (f *Forwarder) Remove(e Entry) (Counters, error) {
	var c Counters
	if !e.valid() {
		return c, nil
	}
	var v turnfwdFwdVal
	// The client->peer half goes first, the reverse of Add.
	held := false
	switch err := f.objs.C2p.LookupAndDelete(e.c2pKey(), &v); {
	case err == nil:
		c.ToPeerPackets, c.ToPeerBytes, c.ToPeerDropped = v.Packets, v.Bytes, v.Dropped
		held = true
	case !errors.Is(err, ebpf.ErrKeyNotExist):
		return c, fmt.Errorf("fastpath: removing client entry: %w", err)
	}
	switch err := f.objs.P2c.LookupAndDelete(e.p2cKey(), &v); {
	case err == nil:
		c.ToClientPackets, c.ToClientBytes, c.ToClientDropped = v.Packets, v.Bytes, v.Dropped
	case !errors.Is(err, ebpf.ErrKeyNotExist):
		return c, fmt.Errorf("fastpath: removing peer entry: %w", err)
	}
	if held {
		f.mu.Lock()
		f.releaseCapLocked(e)
		f.releaseEgressLocked(e.toPeer())
		f.releaseEgressLocked(e.toClient())
		f.mu.Unlock()
	}
	return c, nil
}

// Counters reads what the kernel forwarded for e since it was added.
func (f *Forwarder) Counters(e Entry) (Counters, error) {
	var c Counters
	if !e.valid() {
		return c, errInvalidEntry
	}
	var v turnfwdFwdVal
	if err := f.objs.C2p.Lookup(e.c2pKey(), &v); err != nil {
		return c, fmt.Errorf("fastpath: reading client entry: %w", err)
	}
	c.ToPeerPackets, c.ToPeerBytes, c.ToPeerDropped = v.Packets, v.Bytes, v.Dropped
	if err := f.objs.P2c.Lookup(e.p2cKey(), &v); err != nil {
		return c, fmt.Errorf("fastpath: reading peer entry: %w", err)
	}
	c.ToClientPackets, c.ToClientBytes, c.ToClientDropped = v.Packets, v.Bytes, v.Dropped
	return c, nil
}

// Peers lists the peer of every entry in the kernel, from both maps (a
// peer appears once per map half that names it), for diagnostics and
// tests: only peers the relay's policy admits may ever be here.
func (f *Forwarder) Peers() ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var (
		ck turnfwdC2pKey
		pk turnfwdP2cKey
		v  turnfwdFwdVal
	)
	it := f.objs.C2p.Iterate()
	for it.Next(&ck, &v) {
		out = append(out, netip.AddrPortFrom(addrOf(v.DstIp), port(v.DstPort)))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fastpath: listing client entries: %w", err)
	}
	it = f.objs.P2c.Iterate()
	for it.Next(&pk, &v) {
		out = append(out, netip.AddrPortFrom(addrOf(pk.PeerIp), port(pk.PeerPort)))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("fastpath: listing peer entries: %w", err)
	}
	return out, nil
}

// TakeFaults returns how many datagrams the program dropped since the last
// call because a helper failed half way through a rewrite (the kernel had
// no memory to make the packet writable or to resize it).
func (f *Forwarder) TakeFaults() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0
	}
	var perCPU []uint64
	if err := f.objs.Faults.Lookup(uint32(0), &perCPU); err != nil {
		return 0
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	d := n - f.faultsSeen
	f.faultsSeen = n
	return d
}

// Close detaches the program from every interface and frees it and its maps.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	// The route watcher takes f.mu to reroute: stop it first.
	close(f.done)
	<-f.exited
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for ifindex, d := range f.detach {
		if err := d(); err != nil {
			errs = append(errs, fmt.Errorf("fastpath: detaching from ifindex %d: %w", ifindex, err))
		}
	}
	f.detach = nil
	f.nl.Close()
	errs = append(errs, f.objs.Close())
	return errors.Join(errs...)
}

// Snapshot reads the counters of every entry into s with batched lookups
// (BPF_MAP_LOOKUP_BATCH, Linux 5.6): at 10,000 entries a handful of system
// calls instead of 20,000. ErrUnsupported: the kernel has no batched
// lookups for these maps, and Counters per entry is the way.
func (f *Forwarder) Snapshot(s *Snapshot) error {
	if s.vals == nil {
		s.c2pKeys = make([]turnfwdC2pKey, snapshotChunk)
		s.p2cKeys = make([]turnfwdP2cKey, snapshotChunk)
		s.vals = make([]turnfwdFwdVal, snapshotChunk)
		s.c2p = make(map[turnfwdC2pKey]dirCounts)
		s.p2c = make(map[turnfwdP2cKey]dirCounts)
	}
	if err := readCounters(f.objs.C2p, s.c2pKeys, s.vals, s.c2p); err != nil {
		return fmt.Errorf("fastpath: reading client entries: %w", err)
	}
	if err := readCounters(f.objs.P2c, s.p2cKeys, s.vals, s.p2c); err != nil {
		return fmt.Errorf("fastpath: reading peer entries: %w", err)
	}
	return nil
}

// readCounters replaces into with the counters of every entry of m.
func readCounters[K comparable](m *ebpf.Map, keys []K, vals []turnfwdFwdVal, into map[K]dirCounts) error {
	clear(into)
	var cur ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cur, keys, vals, nil)
		for i := range n {
			into[keys[i]] = dirCounts{vals[i].Packets, vals[i].Bytes, vals[i].Dropped}
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return ErrUnsupported
		case err != nil:
			return err
		}
	}
}
