package gateway

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/pion/transport/v5/deadline"
)

// dtlsPacketConn is the net.PacketConn a DTLS handshake (pion/dtls) runs
// over: reads take the records the worker queued for the transport (in),
// writes are posted to the worker, which sends them out of the leg's
// socket. It never touches the socket itself, so the worker stays the
// socket's only user. Safe for concurrent use; Close is idempotent and
// makes reads and writes return net.ErrClosed.
type dtlsPacketConn struct {
	// set in newDTLSPacketConn, never changed
	t      *dtlsTransport
	in     chan []byte
	closed chan struct{}
	once   sync.Once
	rd     *deadline.Deadline
	local  net.Addr
	remote net.Addr
}

func newDTLSPacketConn(t *dtlsTransport, queue int, local, remote net.Addr) *dtlsPacketConn {
	return &dtlsPacketConn{t: t, in: make(chan []byte, queue), closed: make(chan struct{}),
		rd: deadline.New(), local: local, remote: remote}
}

// ReadFrom returns the next queued record.
func (c *dtlsPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	default:
	}
	select {
	case b := <-c.in:
		return copy(p, b), c.remote, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// WriteTo hands p to the worker; the destination is the leg's remote
// (or where the peer's records came from), whatever addr says.
func (c *dtlsPacketConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	b := append([]byte(nil), p...)
	t := c.t
	if !t.w.post(func() { t.w.dtlsSend(t, b) }) {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

// Close ends reads and writes.
func (c *dtlsPacketConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *dtlsPacketConn) LocalAddr() net.Addr { return c.local }

func (c *dtlsPacketConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *dtlsPacketConn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline is a no-op: writes never block.
func (c *dtlsPacketConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*dtlsPacketConn)(nil)
