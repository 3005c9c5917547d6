package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// Every UDP socket of the data path (listener shards and relay sockets) is
// a raw file descriptor rather than a *net.UDPConn: a Go socket sits in the
// runtime's own epoll set, and each datagram arriving on it would wake the
// netpoller. Here a worker's epoll descriptor is the only one the runtime
// polls for the data path; the worker reads whatever is ready with
// recvmmsg. The sockets are blocking descriptors used only with
// MSG_DONTWAIT, so no call ever blocks: they are issued as raw system calls,
// without the scheduler's bookkeeping for calls that may block (which would
// also keep the runtime's monitor thread waking every 20 µs to retake the
// processor).

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

// rawFD lets sockopt apply its options to a raw descriptor.
type rawFD int

func (r rawFD) Control(f func(fd uintptr)) error  { f(uintptr(r)); return nil }
func (r rawFD) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (r rawFD) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }

var _ syscall.RawConn = rawFD(0)

// sockOpts are the options of relay sockets.
type sockOpts struct {
	mark   uint32
	buffer int
}

// openUDP binds a relay socket to ap with o and returns its descriptor.
func openUDP(ap netip.AddrPort, o sockOpts) (int, error) {
	return openSocket(ap, func(fd, domain int) error { return setRelayOpts(fd, domain, o) })
}

// openListener binds a listener shard to ap: SO_REUSEPORT (shards share the
// port), SO_REUSEADDR and the listener buffers.
func openListener(ap netip.AddrPort, o sockopt.Options) (int, error) {
	return openSocket(ap, func(fd, domain int) error {
		if domain == unix.AF_INET6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
				return fmt.Errorf("relay: IPV6_V6ONLY: %w", err)
			}
		}
		return o.Control("udp", ap.String(), rawFD(fd))
	})
}

func openSocket(ap netip.AddrPort, opts func(fd, domain int) error) (int, error) {
	domain := unix.AF_INET
	if ap.Addr().Is6() {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("relay: socket: %w", err)
	}
	if err := opts(fd, domain); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		unix.Close(fd)
		// EADDRINUSE: another process (or a TIME_WAIT-free UDP user)
		// holds the port; the port pool tries the next one.
		return -1, err
	}
	return fd, nil
}

// localAddr returns the address fd is bound to.
func localAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay: getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, errors.New("relay: unexpected socket address family")
}

func setRelayOpts(fd, domain int, o sockOpts) error {
	if domain == unix.AF_INET6 {
		// A relay socket serves one family (RFC 6156); without V6ONLY an
		// IPv6 wildcard would also take IPv4 traffic.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("relay: IPV6_V6ONLY: %w", err)
		}
	}
	if o.mark != 0 {
		// SO_MARK needs CAP_NET_ADMIN (EPERM otherwise). An unmarked relay
		// socket would follow the VPN's default route, which split
		// tunnelling exists to avoid: fail rather than relay unmarked.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.mark)); err != nil {
			return fmt.Errorf("relay: SO_MARK %#x on a relay socket: %w", o.mark, err)
		}
	}
	if o.buffer > 0 {
		// The FORCE variants ignore net.core.[rw]mem_max but need
		// CAP_NET_ADMIN; the plain ones are capped by the sysctl.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.buffer) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.buffer)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, o.buffer) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, o.buffer)
		}
	}
	return nil
}

// grantedBuffers reads SO_RCVBUF and SO_SNDBUF of fd.
func grantedBuffers(fd int) (rcv, snd int) {
	rcv, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	snd, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	return rcv, snd
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

func isAddrInUse(err error) bool {
	return errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EACCES)
}

// mmsghdr is struct mmsghdr from <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsg is the scratch space of batched I/O on raw sockets. The hdrs point
// into iovs, names and ctrl, so none of them is reallocated after newMmsg.
// One goroutine owns an mmsg.
type mmsg struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte // one UDP_SEGMENT control message per header
	// per send: the datagrams of message k are first[k] .. first[k]+segs[k]
	first []int
	segs  []int
	// gsoSegs counts the datagrams built into GSO messages; the owner
	// publishes and resets it.
	gsoSegs uint64
}

// gsoSpace is the room of one UDP_SEGMENT control message (a uint16).
var gsoSpace = unix.CmsgSpace(2)

// UDP GSO limits: the kernel takes at most 64 segments per send
// (UDP_MAX_SEGMENTS on older kernels) and one datagram of at most 64 KiB
// before segmentation.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65000
)

func newMmsg(n int) *mmsg {
	m := &mmsg{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		ctrl:  make([]byte, n*gsoSpace),
		first: make([]int, n),
		segs:  make([]int, n),
	}
	for i := range m.hdrs {
		m.hdrs[i].hdr.Iov = &m.iovs[i]
		m.hdrs[i].hdr.SetIovlen(1)
		m.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
	}
	for k := 0; k < n; k++ {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&m.ctrl[k*gsoSpace]))
		h.Level = unix.SOL_UDP
		h.Type = unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	return m
}

// recv reads up to len(bufs) datagrams from s without blocking. For each
// one read, ns[i] is its length (trunc[i] set when it did not fit) and
// from[i] its source. It returns how many were read: 0 when none was
// waiting, the socket is closed, or the kernel reported an error (an ICMP
// error queued on the socket is consumed by the call).
func (m *mmsg) recv(s *sockFD, bufs [][]byte, ns []int, trunc []bool, from []netip.AddrPort) int {
	n := min(len(bufs), len(m.hdrs))
	if n == 0 || !s.acquire() {
		return 0
	}
	for i := 0; i < n; i++ {
		h := &m.hdrs[i].hdr
		m.iovs[i].Base = &bufs[i][0]
		m.iovs[i].SetLen(len(bufs[i]))
		h.Iov = &m.iovs[i]
		h.SetIovlen(1)
		h.Control = nil
		h.SetControllen(0)
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
	}
	var r uintptr
	var errno syscall.Errno
	for {
		r, _, errno = unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&m.hdrs[0])),
			uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			break
		}
	}
	s.release()
	got := 0
	if errno == 0 {
		// EAGAIN: nothing waiting (the level-triggered epoll said ready,
		// but a checksum failure dropped the datagram at recv time).
		got = int(r)
	}
	for i := 0; i < got; i++ {
		ns[i] = int(m.hdrs[i].n)
		trunc[i] = m.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0
		from[i] = parseSockaddr(&m.names[i])
	}
	for i := 0; i < n; i++ {
		m.iovs[i].Base = nil
	}
	return got
}

// send writes bufs[i] to dst[i] on s with as few sendmmsg calls as the
// kernel allows. With gso, consecutive datagrams to the same destination
// and of the same length (the last of a run may be shorter) leave as one
// UDP GSO message: one pass through the stack for the run, segmented by
// the device or at the receiving socket. It never blocks: a datagram the
// kernel refuses (EAGAIN on a full buffer, EPERM from a firewall,
// ENETUNREACH) is skipped and counted. It returns how many datagrams were
// not sent and whether a GSO message failed with EIO (the device cannot
// offload checksums: the caller turns GSO off).
func (m *mmsg) send(s *sockFD, v6 bool, bufs [][]byte, dst []netip.AddrPort, gso bool) (failed int, gsoBroken bool) {
	if !s.acquire() {
		return len(bufs), false
	}
	for len(bufs) > 0 {
		n := min(len(bufs), len(m.iovs))
		msgs := m.build(v6, bufs[:n], dst[:n], gso)
		done := 0
		for done < msgs {
			r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&m.hdrs[done])),
				uintptr(msgs-done), unix.MSG_DONTWAIT, 0, 0)
			switch errno {
			case 0:
				done += int(r)
				continue
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				// Send buffer full: drop the rest rather than stall every
				// other allocation of the worker. Media is better lost
				// than late.
				for k := done; k < msgs; k++ {
					failed += m.segs[k]
				}
				done = msgs
				continue
			}
			if k := done; m.segs[k] > 1 && (errno == unix.EIO || errno == unix.EINVAL) {
				// EIO: the device cannot do the checksums GSO needs;
				// EINVAL: a segment larger than the path MTU. Send the
				// run one datagram at a time.
				gsoBroken = gsoBroken || errno == unix.EIO
				f, i := m.first[k], m.segs[k]
				failed += m.sendPlain(s.fd, v6, bufs[f:f+i], dst[f:f+i])
				m.build(v6, bufs[:n], dst[:n], gso) // sendPlain reused the headers
				done++
				continue
			}
			// The kernel refused message done (EPERM from a firewall
			// rule, ENETUNREACH): skip it, send the rest.
			failed += m.segs[done]
			done++
		}
		for i := 0; i < n; i++ {
			m.iovs[i].Base = nil
		}
		bufs, dst = bufs[n:], dst[n:]
	}
	s.release()
	return failed, gsoBroken
}

// build fills the headers for bufs (at most len(m.iovs)) and returns the
// number of messages.
func (m *mmsg) build(v6 bool, bufs [][]byte, dst []netip.AddrPort, gso bool) int {
	k := 0
	for i := 0; i < len(bufs); {
		b := bufs[i]
		j := i + 1
		if gso && len(b) > 0 {
			size, total := len(b), len(b)
			for j < len(bufs) && j-i < gsoMaxSegments && dst[j] == dst[i] && len(bufs[j]) <= size &&
				len(bufs[j]) > 0 && total+len(bufs[j]) <= gsoMaxBytes {
				total += len(bufs[j])
				j++
				if len(bufs[j-1]) < size {
					break // a shorter datagram ends the run
				}
			}
		}
		for x := i; x < j; x++ {
			if len(bufs[x]) > 0 {
				m.iovs[x].Base = &bufs[x][0]
			} else {
				m.iovs[x].Base = nil
			}
			m.iovs[x].SetLen(len(bufs[x]))
		}
		h := &m.hdrs[k].hdr
		h.Iov = &m.iovs[i]
		h.SetIovlen(j - i)
		h.Namelen = putSockaddr(&m.names[k], dst[i], v6)
		if j-i > 1 {
			m.gsoSegs += uint64(j - i)
			c := m.ctrl[k*gsoSpace : (k+1)*gsoSpace]
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(len(b)))
			h.Control = &c[0]
			h.SetControllen(gsoSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		m.first[k], m.segs[k] = i, j-i
		k++
		i = j
	}
	return k
}

// sendPlain sends bufs one datagram per message (no GSO) with the headers
// of m and returns how many the kernel refused.
func (m *mmsg) sendPlain(fd int, v6 bool, bufs [][]byte, dst []netip.AddrPort) int {
	failed := 0
	msgs := m.build(v6, bufs, dst, false)
	for done := 0; done < msgs; {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&m.hdrs[done])),
			uintptr(msgs-done), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			done += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			failed += msgs - done
			done = msgs
		default:
			failed++
			done++
		}
	}
	return failed
}

// gsoSupported reports whether the kernel knows UDP GSO (Linux 4.18).
func gsoSupported() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT, 0) == nil
}

func parseSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	port := ap.Port()
	if !v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET}
		if a = a.Unmap(); a.Is4() {
			sa4.Addr = a.As4()
		} else {
			// Callers check families first; should an IPv6 address slip
			// through, port 0 makes the kernel refuse it (EINVAL).
			port = 0
		}
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}
