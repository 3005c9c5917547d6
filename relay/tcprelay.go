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

// tcpRelay is a TCP allocation's relayed listener (RFC 6062): peers connect
// to it, and the relay's outgoing Connect sockets share its address. It
// applies the peer policy to inbound peers on top of pion's permission
// check, counts and caps the bytes of every peer connection, and holds the
// Connects being dialled in the background (see connectAsync). Safe for
// concurrent use.
type tcpRelay struct {
	net.Listener
	a    *alloc
	off  int
	fam  int
	once sync.Once

	mu       sync.Mutex
	connects []*pendingConnect
	closed   bool
}

func (s *Server) tcpSockopts() sockopt.Options {
	// Connect sockets bind the listener's address: SO_REUSEADDR and
	// SO_REUSEPORT let them (RFC 6062 section 5.2).
	return sockopt.Options{Mark: uint32(s.cfg.Mark), ReuseAddr: true, ReusePort: true,
		RecvBuffer: s.sock.buffer, SendBuffer: s.sock.buffer}
}

// allocateTCP binds a TCP relay listener in the port range for pion's
// AllocateListener.
func (s *Server) allocateTCP(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
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
	a := s.newAlloc(u, true, fam, pool.min+uint16(off))
	t := &tcpRelay{Listener: ln, a: a, off: off, fam: fam}
	a.tcp = t
	s.register(a)
	return t, net.TCPAddrFromAddrPort(a.advAddr()), nil
}

// Accept implements net.Listener: peers the policy refuses are dropped
// before pion sees them, and temporary accept errors are retried.
func (t *tcpRelay) Accept() (net.Conn, error) {
	srv := t.a.srv
	var delay time.Duration
	for {
		c, err := t.Listener.Accept()
		if err != nil {
			// pion's accept loop ends on any error: wait out running out
			// of descriptors (EMFILE) rather than stop accepting peers
			// for the rest of the allocation.
			if temporaryAccept(err) {
				srv.metrics.acceptErrors.Inc()
				delay = acceptBackoff(delay)
				time.Sleep(delay)
				continue
			}
			return nil, err
		}
		delay = 0
		ra, _ := addrPortOf(c.RemoteAddr())
		if reason := srv.policy.Load().Peer(ra.Addr()); reason != reasonNone {
			srv.peerDenied(reason, nil, ra.Addr().String())
			c.Close()
			continue
		}
		return newPeerConn(c, t.a), nil
	}
}

// Close implements net.Listener; pion calls it when the allocation ends.
func (t *tcpRelay) Close() error {
	var err error
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		cs := t.connects
		t.connects = nil
		t.mu.Unlock()
		for _, pc := range cs {
			pc.abandon()
		}
		err = t.Listener.Close()
		srv := t.a.srv
		srv.tcpPorts[t.fam].release(t.off)
		srv.finish(t.a)
	})
	return err
}

// connectPeer is pion's AllocateConn: an RFC 6062 Connect from the
// allocation's relayed address to a peer pion has checked with the
// permission handler. The relay has usually dialled it already in the
// background (connectAsync) and hands over the result; otherwise it dials
// now, blocking pion's reader of that client.
func (s *Server) connectPeer(conf turn.AllocateConnConfig) (net.Conn, error) {
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
	if pc := a.tcp.claim(peer); pc != nil {
		if pc.err != nil {
			return nil, pc.err
		}
		return newPeerConn(pc.conn, a), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.connectTimeout)
	defer cancel()
	c, err := s.dial(ctx, conf.Network, a.relayAddr(), peer)
	if err != nil {
		return nil, err
	}
	return newPeerConn(c, a), nil
}

// dialPeer is the default Server.dial: a TCP connection from the relayed
// address (SO_REUSEADDR and SO_REUSEPORT let it share the allocation's
// listening port, RFC 6062 section 5.2) with the relay sockets' mark.
func (s *Server) dialPeer(ctx context.Context, network string, local, peer netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(local),
		Control:   s.tcpSockopts().Control,
	}
	return d.DialContext(ctx, network, peer.String())
}

// peerConn is a TCP peer connection of an allocation: it counts the bytes
// into the allocation and holds them back when the allocation's or the
// user's bandwidth cap is exceeded (TCP cannot drop, so it waits until the
// token bucket has repaid the debt; the sender slows down through TCP's own
// flow control). One goroutine reads and one writes (pion's two copy
// loops); Close may be called from any.
type peerConn struct {
	net.Conn
	a    *alloc
	done chan struct{}
	once sync.Once
}

// throttleChunk bounds the bytes one Read or Write moves under a cap, so
// that a wait never exceeds the time the smallest burst (16 KiB) takes.
const throttleChunk = 16 << 10

func newPeerConn(c net.Conn, a *alloc) *peerConn {
	return &peerConn{Conn: c, a: a, done: make(chan struct{})}
}

// Read reads bytes from the peer (relayed to the client).
func (c *peerConn) Read(p []byte) (int, error) {
	if len(p) > throttleChunk && c.a.capped(dirToClient) {
		p = p[:throttleChunk]
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.account(dirToClient, n)
		c.wait(c.a.throttle(dirToClient, n, c.a.srv.nanotime()))
	}
	return n, err
}

// Write writes bytes to the peer.
func (c *peerConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > throttleChunk && c.a.capped(dirToPeer) {
			chunk = chunk[:throttleChunk]
		}
		if !c.wait(c.a.throttle(dirToPeer, len(chunk), c.a.srv.nanotime())) {
			return written, net.ErrClosed
		}
		n, err := c.Conn.Write(chunk)
		if n > 0 {
			c.account(dirToPeer, n)
			written += n
		}
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (c *peerConn) account(d, n int) {
	c.a.count(d, n)
	st := &c.a.srv.stats
	st.packets[d].Add(1)
	st.bytes[d].Add(uint64(n))
}

// wait sleeps d (0: not at all) unless the connection closes first; it
// reports false when it did.
func (c *peerConn) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	c.a.srv.stats.throttled.Add(uint64(d))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

// Close implements net.Conn; it is idempotent.
func (c *peerConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}
