package relay

import (
	"net"
	"net/netip"

	"github.com/pion/turn/v5"
)

// events returns pion's EventHandler. pion calls these while holding its
// own allocation and manager locks, so they take only the relay's locks and
// never call back into pion.
func (s *Server) events() turn.EventHandler {
	return turn.EventHandler{
		OnAuth:              s.onAuth,
		OnAllocationCreated: s.onAllocationCreated,
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			if p, ok := netip.AddrFromSlice(peer); ok {
				s.editAlloc(relay, func(d *tableDraft) { d.setPerm(p.Unmap()) })
			}
		},
		OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			if p, ok := netip.AddrFromSlice(peer); ok {
				s.editAlloc(relay, func(d *tableDraft) { d.delPerm(p.Unmap()) })
			}
		},
		OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			if p, ok := addrPortOf(peer); ok {
				s.editAlloc(relay, func(d *tableDraft) { d.setChan(num, p) })
			}
		},
		OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relay, _ net.Addr, num uint16) {
			s.editAlloc(relay, func(d *tableDraft) { d.delChan(num) })
		},
	}
}

// addrPortOf converts a *net.UDPAddr or *net.TCPAddr, unmapping IPv4.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), true
}

// allocByRelay finds the allocation pion names by its relayed address.
func (s *Server) allocByRelay(relay net.Addr) *alloc {
	ap, ok := addrPortOf(relay)
	if !ok {
		return nil
	}
	if _, tcp := relay.(*net.TCPAddr); tcp {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.byRelayTCP[ap]
	}
	fam := 0
	if !ap.Addr().Is4() {
		fam = 1
	}
	if a := s.slots.get(s.udpSlot(fam, ap.Port())); a != nil && a.advAddr() == ap {
		return a
	}
	return nil
}

// groupOf is the UDP listener whose address is lis (or the unspecified
// address at lis's port); nil if none is.
func (s *Server) groupOf(lis netip.AddrPort) *udpGroup {
	for _, g := range s.groups {
		if g.addr == lis || (g.addr.Port() == lis.Port() && g.addr.Addr().IsUnspecified()) {
			return g
		}
	}
	return nil
}

// allocByFive finds an allocation by its 5-tuple: a UDP client's in its
// listener's client table, the others in byFive.
func (s *Server) allocByFive(k fiveKey) *alloc {
	if !k.tcp {
		if g := s.groupOf(k.listener); g != nil {
			return g.clients.get(k.client)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byFive[k]
}

// editAlloc applies f to the allocation's channels and permissions and
// publishes the new snapshot.
func (s *Server) editAlloc(relay net.Addr, f func(d *tableDraft)) {
	a := s.allocByRelay(relay)
	if a == nil {
		return
	}
	a.mu.Lock()
	a.editLocked(f)
	a.mu.Unlock()
}

// onAllocationCreated attaches the client side to the allocation: which
// listener reached it, and for UDP listeners the fast path's client table.
func (s *Server) onAllocationCreated(src, dst net.Addr, _, _, _ string, relay net.Addr, _ int) {
	a := s.allocByRelay(relay)
	if a == nil {
		return
	}
	client, ok1 := addrPortOf(src)
	lis, ok2 := addrPortOf(dst)
	if !ok1 || !ok2 {
		return
	}
	_, isTCP := src.(*net.TCPAddr)
	r := &route{client: client, listener: lis, transport: "udp"}
	if isTCP {
		r.transport = "tcp"
		for _, l := range s.tcpLns {
			if l.addr == lis || (l.addr.Port() == lis.Port() && l.addr.Addr().IsUnspecified()) {
				r.transport = l.transport
				break
			}
		}
	} else {
		r.group = s.groupOf(lis)
	}
	// Under a.mu so that finish sees either no route or the whole of it.
	a.mu.Lock()
	if a.ended {
		a.mu.Unlock()
		return
	}
	a.route.Store(r)
	if r.group != nil {
		r.group.clients.put(client, a)
	}
	s.metrics.created.WithLabelValues(r.transport, a.proto()).Inc()
	s.metrics.active.WithLabelValues(r.transport, a.proto()).Inc()
	if r.group == nil {
		// No client table to find it in (see byFive); under a.mu so that
		// finish, which deletes it, comes after.
		s.mu.Lock()
		s.byFive[r.five()] = a
		s.mu.Unlock()
	}
	a.mu.Unlock()
	s.log.Debug("allocation created", "user", a.user(), "client", client.String(), "transport", r.transport,
		"relay", a.advAddr().String(), "relay_protocol", a.proto())
}
