package relay

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// relayConn is a UDP allocation's relay socket as pion sees it: a
// net.PacketConn whose ReadFrom yields only what the worker hands to the
// slow path (peer datagrams for TCP/TLS clients, and Data indications too
// large for the worker to build) and whose WriteTo sends on the raw
// socket. For a UDP client pion's reader thus parks in ReadFrom for the
// allocation's life and costs its minimal stack (see putDataIndication).
// Safe for concurrent use.
type relayConn struct {
	// set at creation, never changed
	a    *alloc
	sock sockFD
	w    *worker // the worker whose epoll set holds the socket

	q pktQueue // the slow path, popped by pion's reader
}

// sendPool holds the one-datagram senders of WriteTo: shared, so that an
// allocation that once sent a Send indication keeps none.
var sendPool = sync.Pool{New: func() any { return udpbatch.NewSender(1, nil) }}

// slowQueue is how many peer datagrams may wait for pion per allocation;
// more are dropped (queue_full). TCP/TLS clients' traffic all takes this
// path, so it absorbs bursts.
const slowQueue = 512

// ReadFrom implements net.PacketConn for pion's per-allocation reader.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	sp, ok := c.q.pop()
	if !ok {
		return 0, nil, net.ErrClosed
	}
	n := copy(p, (*sp.buf)[4:4+sp.n])
	bufPool.Put(sp.buf)
	return n, net.UDPAddrFromAddrPort(sp.from), nil
}

// WriteTo implements net.PacketConn: pion's Send indications and the
// ChannelData of TCP/TLS clients.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	dst := ua.AddrPort()
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	a := c.a
	st := &a.srv.stats
	if dst.Addr().Is4() == a.v6 {
		st.drops[dropSendError].Add(1)
		return 0, net.InvalidAddrError("address family mismatch")
	}
	if t := a.table.Load(); t != nil {
		if ok, denied := t.permitted(dst.Addr()); !ok || denied {
			st.drops[dropPeerDenied].Add(1)
			return len(p), nil // silently discarded, as RFC 8656 wants
		}
	}
	if !a.allow(dirToPeer, len(p), a.srv.nanotime()) {
		st.drops[dropBandwidth].Add(1)
		return len(p), nil
	}
	sd := sendPool.Get().(*udpbatch.Sender)
	bufs, dsts := [1][]byte{p}, [1]netip.AddrPort{dst}
	failed, _ := c.sock.send(sd, a.v6, bufs[:], dsts[:])
	sendPool.Put(sd)
	if failed != 0 {
		st.drops[dropSendError].Add(1)
		return 0, syscall.EAGAIN
	}
	a.count(dirToPeer, len(p))
	st.packets[dirToPeer].Add(1)
	st.bytes[dirToPeer].Add(uint64(len(p)))
	return len(p), nil
}

// Close implements net.PacketConn; pion calls it when the allocation ends.
// It is idempotent.
func (c *relayConn) Close() error {
	c.a.srv.releaseUDP(c)
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *relayConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.a.relayAddr()) }

// SetDeadline implements net.PacketConn; pion sets none on relay sockets.
func (c *relayConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.PacketConn.
func (c *relayConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.PacketConn.
func (c *relayConn) SetWriteDeadline(time.Time) error { return nil }
