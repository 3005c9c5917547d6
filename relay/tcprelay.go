package relay

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// connectTimeout bounds an RFC 6062 Connect; the RFC wants at least 30 s.
const connectTimeout = 30 * time.Second

// tcpRelay is a TCP allocation's relayed listener (RFC 6062): peers connect
// to it, and the relay's outgoing Connect sockets share its address. It
// applies the peer policy to inbound peers on top of pion's permission
// check and counts the bytes of every peer connection. Safe for concurrent
// use.
type tcpRelay struct {
	net.Listener
	a    *alloc
	off  int
	fam  int
	once sync.Once
}

func (s *Server) tcpSockopts() sockopt.Options {
	// Connect sockets bind the listener's address: SO_REUSEADDR and
	// SO_REUSEPORT let them (RFC 6062 section 5.2).
	return sockopt.Options{Mark: uint32(s.cfg.Mark), ReuseAddr: true, ReusePort: true,
		RecvBuffer: s.sock.buffer, SendBuffer: s.sock.buffer}
}

// AllocateListener implements turn.RelayAddressGenerator for TCP
// allocations.
func (s *Server) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	fam := familyOf(conf.Network)
	pool := s.tcpPorts[fam]
	if pool == nil {
		return nil, nil, errNoFamily
	}
	u, err := s.reserve(conf.UserID)
	if err != nil {
		s.refuse(err, conf.UserID)
		return nil, nil, err
	}
	lc := s.tcpSockopts().ListenConfig()
	var ln net.Listener
	off, err := pool.take(conf.RequestedPort, func(port uint16) error {
		var err error
		ln, err = lc.Listen(context.Background(), conf.Network, netip.AddrPortFrom(s.bind[fam], port).String())
		return err
	}, isAddrInUse)
	if err != nil {
		s.unreserve(u)
		s.refuse(err, conf.UserID)
		return nil, nil, err
	}
	a := s.newAlloc(u, "tcp", fam, pool.min+uint16(off))
	t := &tcpRelay{Listener: ln, a: a, off: off, fam: fam}
	a.tcp = t
	a.closer = t.Close
	s.register(a)
	return t, net.TCPAddrFromAddrPort(a.advAddr), nil
}

// Accept implements net.Listener: peers the policy refuses are dropped
// before pion sees them.
func (t *tcpRelay) Accept() (net.Conn, error) {
	srv := t.a.srv
	for {
		c, err := t.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ra, _ := addrPortOf(c.RemoteAddr())
		if reason := srv.policy.Load().Peer(ra.Addr()); reason != reasonNone {
			srv.peerDenied(reason, nil, ra.Addr().String())
			c.Close()
			continue
		}
		return &countingConn{Conn: c, a: t.a}, nil
	}
}

// Close implements net.Listener; pion calls it when the allocation ends.
func (t *tcpRelay) Close() error {
	var err error
	t.once.Do(func() {
		err = t.Listener.Close()
		srv := t.a.srv
		srv.tcpPorts[t.fam].release(t.off)
		srv.finish(t.a)
	})
	return err
}

// AllocateConn implements turn.RelayAddressGenerator: an RFC 6062 Connect
// from the allocation's relayed address to a peer pion has checked with
// the permission handler.
func (s *Server) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	a := s.allocByRelay(conf.LocalAddr)
	if a == nil || a.tcp == nil {
		return nil, errClosed
	}
	peer, ok := addrPortOf(conf.RemoteAddr)
	if !ok {
		return nil, net.InvalidAddrError("not a TCP address")
	}
	if reason := s.policy.Load().Peer(peer.Addr()); reason != reasonNone {
		s.peerDenied(reason, nil, peer.Addr().String())
		return nil, errClosed
	}
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(a.relayAddr),
		Timeout:   connectTimeout,
		Control:   s.tcpSockopts().Control,
	}
	c, err := d.Dial(conf.Network, peer.String())
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, a: a}, nil
}

// countingConn counts a TCP peer connection's bytes into its allocation.
type countingConn struct {
	net.Conn
	a *alloc
}

// Read counts bytes from the peer (relayed to the client).
func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.a.count(dirToClient, n)
		c.a.srv.stats.packets[dirToClient].Add(1)
		c.a.srv.stats.bytes[dirToClient].Add(uint64(n))
	}
	return n, err
}

// Write counts bytes to the peer.
func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.a.count(dirToPeer, n)
		c.a.srv.stats.packets[dirToPeer].Add(1)
		c.a.srv.stats.bytes[dirToPeer].Add(uint64(n))
	}
	return n, err
}
