package relay

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/pion/turn/v5"
)

// The Server is pion's RelayAddressGenerator for every listener.
var _ turn.RelayAddressGenerator = (*Server)(nil)

// Validate implements turn.RelayAddressGenerator.
func (s *Server) Validate() error { return nil }

func familyOf(network string) int {
	if network == "udp6" || network == "tcp6" {
		return 1
	}
	return 0
}

// reserve counts a new allocation of user against the quotas; it is the
// hard check behind QuotaHandler (two requests racing past the handler
// cannot both take the last place). The caller must call unreserve or
// register the allocation.
func (s *Server) reserve(user string) (*userState, error) {
	lim := s.limits.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.draining.Load() {
		return nil, errDraining
	}
	u := s.users[user]
	if lim.MaxAllocations > 0 && len(s.allocs)+s.pending >= lim.MaxAllocations {
		return nil, errQuota
	}
	if u != nil && lim.MaxAllocationsPerUser > 0 && u.allocs >= lim.MaxAllocationsPerUser {
		return nil, errQuota
	}
	if u == nil {
		u = &userState{name: user}
		now := s.nanotime()
		if b := newBucket(int64(lim.BitratePerUser), now); b != nil {
			u.buckets[dirToPeer].Store(b)
			u.buckets[dirToClient].Store(newBucket(int64(lim.BitratePerUser), now))
		}
		s.users[user] = u
	}
	u.allocs++
	s.pending++
	return u, nil
}

// unreserve undoes reserve after a failure.
func (s *Server) unreserve(u *userState) {
	s.mu.Lock()
	s.pending--
	s.dropUserLocked(u)
	s.mu.Unlock()
}

func (s *Server) dropUserLocked(u *userState) {
	u.allocs--
	if u.allocs <= 0 && s.users[u.name] == u {
		delete(s.users, u.name)
	}
}

// newAlloc builds the alloc for a socket bound at bind:port.
func (s *Server) newAlloc(u *userState, proto string, fam int, port uint16) *alloc {
	a := &alloc{
		srv:       s,
		user:      u.name,
		usr:       u,
		proto:     proto,
		v6:        fam == 1,
		created:   time.Now(),
		slot:      -1,
		relayAddr: netip.AddrPortFrom(s.bind[fam], port),
		advAddr:   netip.AddrPortFrom(s.adv[fam], port),
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

// register publishes a new allocation (its socket is bound).
func (s *Server) register(a *alloc) {
	s.mu.Lock()
	s.nextID++
	a.id = s.nextID
	s.pending--
	s.allocs[a.id] = a
	s.byRelay[relayKey{a.advAddr, a.proto == "tcp"}] = a
	s.mu.Unlock()
}

// shardGen is the RelayAddressGenerator of one UDP listener shard: its
// allocations' relay sockets join the shard's worker, which also reads the
// clients' ChannelData, so both directions of a call are served in the same
// round.
type shardGen struct {
	*Server
	w *worker
}

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *shardGen) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	return g.allocateUDP(conf, g.w)
}

// AllocatePacketConn implements turn.RelayAddressGenerator for TCP and TLS
// listeners: their UDP allocations are spread over the workers.
func (s *Server) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if len(s.workers) == 0 {
		return nil, nil, errClosed
	}
	w := s.workers[int(s.nextW.Add(1))%len(s.workers)]
	return s.allocateUDP(conf, w)
}

// allocateUDP binds a UDP relay socket in the port range and registers it
// with worker w.
func (s *Server) allocateUDP(conf turn.AllocateListenerConfig, w *worker) (net.PacketConn, net.Addr, error) {
	fam := familyOf(conf.Network)
	pool := s.udpPorts[fam]
	if pool == nil {
		return nil, nil, errNoFamily
	}
	u, err := s.reserve(conf.UserID)
	if err != nil {
		s.refuse(err, conf.UserID)
		return nil, nil, err
	}
	fd := -1
	off, err := pool.take(conf.RequestedPort, func(port uint16) error {
		var err error
		fd, err = openUDP(netip.AddrPortFrom(s.bind[fam], port), s.sock)
		return err
	}, isAddrInUse)
	if err != nil {
		s.unreserve(u)
		s.refuse(err, conf.UserID)
		return nil, nil, err
	}
	a := s.newAlloc(u, "udp", fam, pool.min+uint16(off))
	c := &relayConn{a: a, sock: sockFD{fd: fd}, w: w}
	c.q.init()
	a.udp = c
	a.slot = fam*s.cfg.Ports.Len() + off
	s.slots.set(a.slot, a)
	if err := w.add(fd, a.slot); err != nil {
		s.slots.set(a.slot, nil)
		c.sock.close()
		pool.release(off)
		s.unreserve(u)
		return nil, nil, err
	}
	s.register(a)
	return c, net.UDPAddrFromAddrPort(a.advAddr), nil
}

// releaseUDP ends a UDP allocation when pion closes its relay socket. It is
// idempotent.
func (s *Server) releaseUDP(c *relayConn) {
	a := c.a
	// Hold a reference so that the descriptor stays open (and is not
	// reused) until it has left the worker's epoll set.
	if !c.sock.acquire() {
		return
	}
	first := c.sock.close()
	c.w.remove(c.sock.fd)
	c.sock.release()
	if !first {
		return
	}
	c.q.close()
	s.slots.set(a.slot, nil)
	fam := 0
	if a.v6 {
		fam = 1
	}
	s.udpPorts[fam].release(a.slot - fam*s.cfg.Ports.Len())
	s.finish(a)
}

// refuse counts and logs an allocation refused after authentication.
func (s *Server) refuse(err error, user string) {
	reason := "other"
	switch {
	case errors.Is(err, errQuota):
		reason = "quota_total"
		if lim := s.limits.Load(); lim.MaxAllocationsPerUser > 0 {
			s.mu.Lock()
			if u := s.users[user]; u != nil && u.allocs >= lim.MaxAllocationsPerUser {
				reason = "quota_user"
			}
			s.mu.Unlock()
		}
	case errors.Is(err, errPortsExhausted):
		reason = "ports_exhausted"
	case errors.Is(err, errDraining):
		reason = "draining"
	case errors.Is(err, errClosed):
		return
	}
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.log.Warn("allocation refused", "reason", reason, "user", user, "err", err)
}

// quota is pion's QuotaHandler: 486 when the user or the relay is full.
func (s *Server) quota(user, _ string, src net.Addr) bool {
	lim := s.limits.Load()
	s.mu.Lock()
	total := len(s.allocs) + s.pending
	n := 0
	if u := s.users[user]; u != nil {
		n = u.allocs
	}
	s.mu.Unlock()
	reason := ""
	switch {
	case s.draining.Load():
		reason = "draining"
	case lim.MaxAllocationsPerUser > 0 && n >= lim.MaxAllocationsPerUser:
		reason = "quota_user"
	case lim.MaxAllocations > 0 && total >= lim.MaxAllocations:
		reason = "quota_total"
	}
	if reason == "" {
		return true
	}
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.log.Info("allocation refused (486)", "reason", reason, "user", user, "client", addrString(src),
		"user_allocations", n, "total_allocations", total)
	return false
}

// permit is pion's PermissionHandler: the peer policy, for
// CreatePermission, ChannelBind and Connect.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	reason := s.policy.Load().PeerIP(peer)
	if reason == reasonNone {
		return true
	}
	s.peerDenied(reason, client, peer.String())
	return false
}

// peerDenied counts and logs a refused peer.
func (s *Server) peerDenied(reason string, client net.Addr, peer string) {
	s.metrics.denied.WithLabelValues(reason).Inc()
	if s.auth.logRate.allow() {
		s.log.Info("peer refused by policy (403)", "reason", reason, "client", addrString(client), "peer", peer)
	}
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
	five := a.five
	r := a.route.Load()
	a.mu.Unlock()
	if r != nil && r.group != nil {
		r.group.clients.del(r.client, a)
	}
	s.mu.Lock()
	if _, ok := s.allocs[a.id]; ok {
		delete(s.allocs, a.id)
		delete(s.byRelay, relayKey{a.advAddr, a.proto == "tcp"})
		if s.byFive[five] == a {
			delete(s.byFive, five)
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
	d := time.Since(a.created)
	s.metrics.active.WithLabelValues(r.transport, a.proto).Dec()
	s.metrics.duration.Observe(d.Seconds())
	s.log.Info("allocation ended",
		"user", a.user, "client", r.client.String(), "transport", r.transport,
		"relay", a.advAddr.String(), "relay_protocol", a.proto,
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

// housekeeping enforces max_duration once a second until Close.
func (s *Server) housekeeping() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		maxD := s.limits.Load().MaxDuration.D()
		if maxD <= 0 {
			continue
		}
		var old []*alloc
		s.mu.Lock()
		for _, a := range s.allocs {
			if time.Since(a.created) >= maxD {
				old = append(old, a)
			}
		}
		s.mu.Unlock()
		for _, a := range old {
			a.setEndReason("max_duration")
			a.close()
		}
	}
}
