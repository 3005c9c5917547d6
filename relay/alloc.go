package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// alloc is the relay's view of one allocation: its relay socket, the
// channel and permission snapshot the data path reads, and the counters of
// its accounting line. pion owns the allocation itself (its timers, its
// permissions); the relay mirrors what the data path needs through pion's
// EventHandler. An alloc is created by the relay address generator (pion's
// AllocatePacketConn/AllocateListener) and ends when pion closes its relay
// socket.
type alloc struct {
	// set at creation, never changed
	id      uint64
	srv     *Server
	usr     *userState // the user, with its quota and buckets
	udp     *relayConn // UDP relay socket, nil for TCP
	tcp     *tcpRelay  // TCP relay listener, nil for UDP
	created int64      // on the relay's monotonic clock (Server.nanotime)
	port    uint16     // relay port; the addresses are the Server's (relayAddr, advAddr)
	v6      bool
	isTCP   bool // relay protocol TCP (RFC 6062)

	// route is where peer->client datagrams go; nil until pion reports the
	// allocation created, then never changed. Read lock-free by the worker.
	route atomic.Pointer[route]
	// table is the channel and permission snapshot; replaced, never
	// modified, under mu.
	table atomic.Pointer[chanTable]
	// buckets cap each direction; nil when there is no cap.
	buckets [numDirs]atomic.Pointer[tokenBucket]

	// read hint of the relay socket, owned by its worker: how many
	// datagrams the next recvmmsg asks for (see worker.serveRelay)
	rhint uint8

	// counters, each direction
	packets [numDirs]atomic.Uint64
	bytes   [numDirs]atomic.Uint64

	// endReason says why the allocation ended when the relay knows better
	// than "expired" (set before pion deletes it).
	endReason atomic.Pointer[string]

	// mu guards the following and serialises table edits.
	mu    sync.Mutex
	ended bool
	fast  []fastEntry // channels the kernel forwards (see syncFastLocked)
}

// An alloc is kept small: 10,000 idle allocations hold 10,000 of them
// (docs/relay.md, "Memory per idle allocation"). What the Server knows
// (addresses, port range) is derived, not copied.

func (a *alloc) fam() int {
	if a.v6 {
		return 1
	}
	return 0
}

// relayAddr is the address the relay socket is bound to.
func (a *alloc) relayAddr() netip.AddrPort { return netip.AddrPortFrom(a.srv.bind[a.fam()], a.port) }

// advAddr is the advertised relayed address (XOR-RELAYED-ADDRESS).
func (a *alloc) advAddr() netip.AddrPort { return netip.AddrPortFrom(a.srv.adv[a.fam()], a.port) }

// proto is the relay protocol: "udp" or "tcp".
func (a *alloc) proto() string {
	if a.isTCP {
		return "tcp"
	}
	return "udp"
}

// age is how long ago the allocation was created.
func (a *alloc) age() time.Duration { return time.Duration(a.srv.nanotime() - a.created) }

// createdAt is when the allocation was created (wall clock as of the
// relay's start plus its monotonic age: 8 bytes instead of a time.Time).
func (a *alloc) createdAt() time.Time { return a.srv.clock0.Add(time.Duration(a.created)).Round(0) }

// user is the allocation's user name.
func (a *alloc) user() string { return a.usr.name }

// slot is the worker slot of a UDP allocation's relay socket.
func (a *alloc) slot() int { return a.srv.udpSlot(a.fam(), a.port) }

// udpSlot is the worker slot of UDP relay port port in family fam, or -1
// outside the range.
func (s *Server) udpSlot(fam int, port uint16) int {
	p := s.udpPorts[fam]
	if p == nil || port < p.min || int(port-p.min) >= s.cfg.Ports.Len() {
		return -1
	}
	return fam*s.cfg.Ports.Len() + int(port-p.min)
}

// route is the client side of an allocation.
type route struct {
	client    netip.AddrPort
	listener  netip.AddrPort
	transport string    // udp, tcp, tls
	group     *udpGroup // UDP listener whose socket reaches the client; nil for TCP/TLS
}

// fiveKey identifies an allocation the way pion does: client address and
// the listener address it reached.
type fiveKey struct {
	client, listener netip.AddrPort
	tcp              bool
}

// five is the allocation's 5-tuple key; r is its route.
func (r *route) five() fiveKey {
	return fiveKey{client: r.client, listener: r.listener, tcp: r.transport != "udp"}
}

// allow charges n bytes in direction d to the allocation's and the user's
// buckets. now is nanoseconds on the relay's monotonic clock.
func (a *alloc) allow(d int, n int, now int64) bool {
	if b := a.buckets[d].Load(); b != nil && !b.take(n, now) {
		return false
	}
	if u := a.usr; u != nil {
		if b := u.buckets[d].Load(); b != nil && !b.take(n, now) {
			return false
		}
	}
	return true
}

// capped reports whether direction d has a bandwidth cap.
func (a *alloc) capped(d int) bool {
	return a.buckets[d].Load() != nil || (a.usr != nil && a.usr.buckets[d].Load() != nil)
}

// throttle charges n bytes of a stream in direction d to the allocation's
// and the user's buckets, even beyond their tokens, and returns how long
// the stream must wait before sending them (0: at once).
func (a *alloc) throttle(d int, n int, now int64) time.Duration {
	var w time.Duration
	if b := a.buckets[d].Load(); b != nil {
		w = b.charge(n, now)
	}
	if u := a.usr; u != nil {
		if b := u.buckets[d].Load(); b != nil {
			w = max(w, b.charge(n, now))
		}
	}
	return w
}

// count adds to the allocation's counters.
func (a *alloc) count(d int, n int) {
	a.packets[d].Add(1)
	a.bytes[d].Add(uint64(n))
}

// userState is what the relay keeps per user: live allocations (quota) and
// the per-user bandwidth buckets. Guarded by Server.mu except the buckets.
type userState struct {
	name    string
	allocs  int
	buckets [numDirs]atomic.Pointer[tokenBucket]
}

// newAlloc builds the alloc for a socket bound at bind:port.
func (s *Server) newAlloc(u *userState, tcp bool, fam int, port uint16) *alloc {
	a := &alloc{
		srv:     s,
		usr:     u,
		isTCP:   tcp,
		v6:      fam == 1,
		created: s.nanotime(),
		port:    port,
	}
	a.table.Store(emptyTable)
	lim := s.limits.Load()
	now := s.nanotime()
	if b := newBucket(int64(lim.BitratePerAllocation), now); b != nil {
		a.buckets[dirToPeer].Store(b)
		a.buckets[dirToClient].Store(newBucket(int64(lim.BitratePerAllocation), now))
	}
	return a
}

// register publishes a new allocation (its socket is bound). UDP
// allocations are found by relayed address through the slot table, TCP
// ones through byRelayTCP.
func (s *Server) register(a *alloc) {
	s.mu.Lock()
	s.nextID++
	a.id = s.nextID
	s.pending--
	s.allocs[a.id] = a
	if a.isTCP {
		s.byRelayTCP[a.advAddr()] = a
	}
	s.mu.Unlock()
}

// finish ends an allocation's bookkeeping and writes its accounting line.
// It runs once, when its relay socket or listener closes.
func (s *Server) finish(a *alloc) {
	a.mu.Lock()
	if a.ended {
		a.mu.Unlock()
		return
	}
	a.ended = true
	a.syncFastLocked(emptyTable) // the kernel stops forwarding; counters join ours
	r := a.route.Load()
	a.mu.Unlock()
	if r != nil && r.group != nil {
		r.group.clients.del(r.client, a)
	}
	s.mu.Lock()
	if _, ok := s.allocs[a.id]; ok {
		delete(s.allocs, a.id)
		if a.isTCP {
			delete(s.byRelayTCP, a.advAddr())
		}
		if r != nil && r.group == nil {
			if five := r.five(); s.byFive[five] == a {
				delete(s.byFive, five)
			}
		}
		s.dropUserLocked(a.usr)
	}
	s.mu.Unlock()
	if r == nil {
		// Never reported created: an EVEN-PORT probe or a failed
		// Allocate. Not an allocation; no accounting line.
		return
	}
	reason := "expired"
	if p := a.endReason.Load(); p != nil {
		reason = *p
	}
	if s.stopping.Load() && a.endReason.Load() == nil {
		reason = "shutdown"
	}
	d := a.age()
	s.metrics.active.WithLabelValues(r.transport, a.proto()).Dec()
	s.metrics.duration.Observe(d.Seconds())
	s.log.Info("allocation ended",
		"user", a.user(), "client", r.client.String(), "transport", r.transport,
		"relay", a.advAddr().String(), "relay_protocol", a.proto(),
		"duration", d.Round(time.Millisecond).String(), "reason", reason,
		"packets_to_peer", a.packets[dirToPeer].Load(), "bytes_to_peer", a.bytes[dirToPeer].Load(),
		"packets_to_client", a.packets[dirToClient].Load(), "bytes_to_client", a.bytes[dirToClient].Load())
}

// setEndReason records why the relay is ending a (first reason wins).
func (a *alloc) setEndReason(r string) { a.endReason.CompareAndSwap(nil, &r) }

// close ends the allocation from the relay's side: pion's reader sees the
// socket closed and deletes the allocation.
func (a *alloc) close() {
	switch {
	case a.udp != nil:
		_ = a.udp.Close()
	case a.tcp != nil:
		_ = a.tcp.Close()
	}
}
