package relay

import (
	"errors"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// Every UDP socket of the data path (listener shards and relay sockets) is
// a raw file descriptor rather than a *net.UDPConn: a Go socket sits in the
// runtime's own epoll set, and each datagram arriving on it would wake the
// netpoller. Here a worker's epoll descriptor is the only one the runtime
// polls for the data path; the worker reads whatever is ready with
// recvmmsg. internal/udpbatch opens the sockets and does the batched I/O,
// with raw system calls that never block.

// sockFD is a socket descriptor shared by the goroutines that read and send
// on it. A call holds a reference (acquire/release); close marks the socket
// closed and the descriptor is closed when the last call ends, so that a
// send racing with close fails cleanly instead of writing to a descriptor
// number the kernel has since reused. Safe for concurrent use.
type sockFD struct {
	fd int
	// state is 2 × the calls in progress, plus 1 once closed.
	state atomic.Int64
}

// acquire takes a reference; false when the socket is closed.
func (s *sockFD) acquire() bool {
	for {
		v := s.state.Load()
		if v&1 != 0 {
			return false
		}
		if s.state.CompareAndSwap(v, v+2) {
			return true
		}
	}
}

// release drops a reference, closing the descriptor if it was the last one
// of a closed socket.
func (s *sockFD) release() {
	if s.state.Add(-2) == 1 {
		unix.Close(s.fd)
	}
}

// close marks the socket closed; it reports false if it already was.
func (s *sockFD) close() bool {
	for {
		v := s.state.Load()
		if v&1 != 0 {
			return false
		}
		if s.state.CompareAndSwap(v, v|1) {
			if v == 0 {
				unix.Close(s.fd)
			}
			return true
		}
	}
}

// sockOpts are the options of relay sockets.
type sockOpts struct {
	mark   uint32
	buffer int
}

// openUDP binds a relay socket to ap with o and returns its descriptor.
// A relay socket serves one family (RFC 6156): an IPv6 one gets
// IPV6_V6ONLY, or an IPv6 wildcard would take IPv4 traffic too. A mark
// the kernel refuses (EPERM without CAP_NET_ADMIN) fails the socket: an
// unmarked relay socket would follow the VPN's default route, which split
// tunnelling exists to avoid.
func openUDP(ap netip.AddrPort, o sockOpts) (int, error) {
	return udpbatch.Open(ap, sockopt.Options{Mark: o.mark, RecvBuffer: o.buffer, SendBuffer: o.buffer}, false)
}

// isAddrInUse reports a bind the port pool answers by trying the next
// port: EADDRINUSE (another process holds it), or EACCES (a port under
// net.ipv4.ip_unprivileged_port_start without CAP_NET_BIND_SERVICE).
func isAddrInUse(err error) bool {
	return udpbatch.IsAddrInUse(err) || errors.Is(err, unix.EACCES)
}

// recv reads up to len(bufs) datagrams from s without blocking, with rb's
// scratch space. For each one read, ns[i] is its length (trunc[i] set when
// it did not fit) and from[i] its source. It returns how many were read:
// 0 when none was waiting, the socket is closed, or the kernel reported an
// error (an ICMP error queued on the socket is consumed by the call).
func (s *sockFD) recv(rb *udpbatch.RecvBatch, bufs [][]byte, ns []int, trunc []bool, from []netip.AddrPort) int {
	if !s.acquire() {
		return 0
	}
	// EAGAIN: nothing waiting (the level-triggered epoll said ready, but
	// a checksum failure dropped the datagram at recv time).
	k, _ := rb.Recv(s.fd, bufs)
	s.release()
	for i := 0; i < k; i++ {
		ns[i], trunc[i], from[i] = rb.Size(i), rb.Truncated(i), rb.Addr(i)
	}
	return k
}

// send writes bufs[i] to dst[i] on s with sd, as few sendmmsg calls as
// the kernel allows; consecutive datagrams to one destination leave as UDP
// GSO messages while sd's GSO switch is on. It never blocks: a datagram the
// kernel refuses (EAGAIN on a full buffer, EPERM from a firewall,
// ENETUNREACH, a destination of the other family) is skipped and counted.
// It returns how many datagrams were not sent, and a non-nil error
// (udpbatch.ErrGSODisabled) only for the call that turned GSO off, which
// the caller reports once.
func (s *sockFD) send(sd *udpbatch.Sender, v6 bool, bufs [][]byte, dst []netip.AddrPort) (failed int, err error) {
	if !s.acquire() {
		return len(bufs), nil
	}
	failed, err = sd.Send(s.fd, v6, bufs, dst, nil)
	s.release()
	return failed, err
}
