package relay

import (
	"net"
	"net/netip"

	"github.com/pion/turn/v5"
)

// generator is pion's RelayAddressGenerator. The Server makes one per UDP
// listener shard, whose w is the shard's worker: the relay sockets of the
// allocations made through it join that worker, which also reads the
// clients' ChannelData, so both directions of a call are served in the same
// round. The TCP and TLS listeners share one with w nil: their UDP
// allocations are spread over the workers. pion calls a generator from its
// readers, concurrently; it lives as long as the Server.
type generator struct {
	s *Server
	w *worker // nil: round robin over the workers
}

var _ turn.RelayAddressGenerator = (*generator)(nil)

// Validate implements turn.RelayAddressGenerator; the Server checked its
// configuration in New.
func (g *generator) Validate() error { return nil }

// AllocatePacketConn implements turn.RelayAddressGenerator: a UDP relay
// socket.
func (g *generator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	w := g.w
	if w == nil {
		s := g.s
		if len(s.workers) == 0 {
			return nil, nil, errClosed
		}
		w = s.workers[int(s.nextW.Add(1))%len(s.workers)]
	}
	return g.s.allocateUDP(conf, w)
}

// AllocateListener implements turn.RelayAddressGenerator: a TCP relay
// listener (RFC 6062).
func (g *generator) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return g.s.allocateTCP(conf)
}

// AllocateConn implements turn.RelayAddressGenerator: an RFC 6062 Connect.
func (g *generator) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	return g.s.connectPeer(conf)
}

func familyOf(network string) int {
	if network == "udp6" || network == "tcp6" {
		return 1
	}
	return 0
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
	a := s.newAlloc(u, false, fam, pool.min+uint16(off))
	c := &relayConn{a: a, sock: sockFD{fd: fd}, w: w}
	c.q.init()
	a.udp = c
	slot := a.slot()
	s.slots.set(slot, a)
	if err := w.add(fd, slot); err != nil {
		s.slots.set(slot, nil)
		c.sock.close()
		pool.release(off)
		s.unreserve(u)
		return nil, nil, err
	}
	s.register(a)
	return c, net.UDPAddrFromAddrPort(a.advAddr()), nil
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
	s.slots.set(a.slot(), nil)
	fam := a.fam()
	s.udpPorts[fam].release(int(a.port - s.udpPorts[fam].min))
	s.finish(a)
}
