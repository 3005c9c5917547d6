// Package udpbatch reads and writes batches of UDP datagrams with one system
// call (recvmmsg/sendmmsg on Linux) and no allocation per packet. It is
// mediaedge's one implementation of batched UDP, at two levels:
//
//   - Conn wraps a *net.UDPConn and blocks in Go's netpoller. On other
//     systems, or when the kernel refuses the batch calls, it falls back to
//     one datagram per call behind the same interface; Mode says which is
//     active. A Conn has one reader and one writer at a time: ReadBatch must
//     not be called concurrently with itself, nor WriteBatch with itself
//     (each keeps its own scratch space). A reader and a writer may run
//     concurrently.
//   - RecvBatch and SendBatch work on raw socket descriptors that the
//     caller polls itself (an epoll set per worker, as the relay and the
//     gateway do), opened with Open. SendBatch groups runs of datagrams to
//     one destination into UDP GSO messages. These are Linux only; elsewhere
//     they fail with ErrUnsupported.
package udpbatch

import (
	"net"
	"net/netip"
)

// Message is one datagram of a batch. For reads, Buf is the buffer to fill
// and N and Addr are set; for writes, Buf[:N] is sent to Addr.
type Message struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort
}

// Mode names the I/O mode of a Conn, for metrics and logs.
type Mode string

const (
	// ModeMmsg means recvmmsg/sendmmsg: many datagrams per system call.
	ModeMmsg Mode = "mmsg"
	// ModeSingle means one datagram per system call.
	ModeSingle Mode = "single"
)

// Conn is a UDP socket with batched I/O. Close the underlying *net.UDPConn
// to end it: blocked calls then return net.ErrClosed.
type Conn struct {
	uc *net.UDPConn
	// v6 is true when the socket is AF_INET6: IPv4 destinations are then
	// written as IPv4-mapped addresses.
	v6  bool
	sys sysConn
}

// New wraps uc. batch is the largest batch the caller will pass (it sizes
// the scratch space); it is at least 1.
func New(uc *net.UDPConn, batch int) *Conn {
	if batch < 1 {
		batch = 1
	}
	la, _ := uc.LocalAddr().(*net.UDPAddr)
	c := &Conn{uc: uc, v6: la != nil && la.IP.To4() == nil}
	c.sys.init(uc, batch, c.v6)
	return c
}

// UDPConn returns the wrapped socket.
func (c *Conn) UDPConn() *net.UDPConn { return c.uc }

// Mode reports the active I/O mode.
func (c *Conn) Mode() Mode { return c.sys.mode() }

// ReadBatch blocks until at least one datagram arrives, then fills as many of
// msgs as are ready without blocking again. It returns how many were filled.
// Addresses are unmapped (an IPv4 peer on an IPv6 socket reads as IPv4).
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	return c.sys.read(c.uc, msgs)
}

// WriteBatch sends msgs in order and returns how many were sent. It blocks
// while the socket buffer is full. A datagram the kernel refuses (e.g.
// EHOSTUNREACH for that destination) ends the batch with that error after
// the ones before it were sent; the caller counts it and may go on with the
// rest.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	return c.sys.write(c.uc, msgs)
}

// readSingle and writeSingle are the portable fallback.
func readSingle(uc *net.UDPConn, msgs []Message) (int, error) {
	n, addr, err := uc.ReadFromUDPAddrPort(msgs[0].Buf)
	if err != nil {
		return 0, err
	}
	msgs[0].N = n
	msgs[0].Addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return 1, nil
}

func writeSingle(uc *net.UDPConn, v6 bool, msgs []Message) (int, error) {
	for i := range msgs {
		a := msgs[i].Addr
		if v6 && a.Addr().Is4() {
			a = netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
		}
		if _, err := uc.WriteToUDPAddrPort(msgs[i].Buf[:msgs[i].N], a); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}
