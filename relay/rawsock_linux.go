package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Relay sockets are raw file descriptors rather than *net.UDPConn: the
// relay's poller watches thousands of them with its own epoll set and reads
// each ready one with recvmmsg, so they must stay out of Go's netpoller
// (which would wake for every datagram too). They are blocking sockets used
// only with MSG_DONTWAIT, wrapped in an *os.File for its reference-counted
// close: a send racing with Close fails with os.ErrClosed instead of
// writing to a reused descriptor.

// sockOpts are the options of relay sockets.
type sockOpts struct {
	mark   uint32
	buffer int
}

// openUDP binds a UDP socket to ap with opts. It returns the file and the
// raw descriptor (valid while the file is open).
func openUDP(ap netip.AddrPort, o sockOpts) (*os.File, int, error) {
	domain := unix.AF_INET
	if ap.Addr().Is6() {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, -1, fmt.Errorf("relay: socket: %w", err)
	}
	if err := setRelayOpts(fd, domain, o); err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		unix.Close(fd)
		// EADDRINUSE: another process (or a TIME_WAIT-free UDP user)
		// holds the port; the caller tries the next one.
		return nil, -1, err
	}
	return os.NewFile(uintptr(fd), "relay-udp"), fd, nil
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

// mmsg is the scratch space for one direction of batched I/O on raw
// sockets. The hdrs point into iovs and names, so none of the three is
// reallocated after newMmsg. One goroutine owns an mmsg.
type mmsg struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6

	// per call: set before rc.Read/Write, read after
	cnt, done int
	v6        bool
	errno     syscall.Errno
	readFn    func(fd uintptr) bool
	writeFn   func(fd uintptr) bool
}

func newMmsg(n int) *mmsg {
	m := &mmsg{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
	}
	for i := range m.hdrs {
		m.hdrs[i].hdr.Iov = &m.iovs[i]
		m.hdrs[i].hdr.SetIovlen(1)
		m.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
	}
	// Method values built once: a call allocates no closure.
	m.readFn = m.doRead
	m.writeFn = m.doWrite
	return m
}

// recv reads up to len(bufs) datagrams without blocking. For each one read,
// ns[i] is its length (with truncated set when it did not fit) and from[i]
// its source. It returns how many were read; 0 with a nil error means
// none was waiting.
func (m *mmsg) recv(rc syscall.RawConn, bufs [][]byte, ns []int, trunc []bool, from []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(m.hdrs))
	for i := 0; i < n; i++ {
		m.iovs[i].Base = &bufs[i][0]
		m.iovs[i].SetLen(len(bufs[i]))
		m.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		m.hdrs[i].hdr.Flags = 0
	}
	m.cnt, m.done, m.errno = n, 0, 0
	if err := rc.Read(m.readFn); err != nil {
		return 0, err
	}
	for i := 0; i < m.done; i++ {
		ns[i] = int(m.hdrs[i].n)
		trunc[i] = m.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0
		from[i] = parseSockaddr(&m.names[i])
	}
	for i := 0; i < n; i++ {
		m.iovs[i].Base = nil
	}
	if m.errno != 0 && m.done == 0 {
		return 0, m.errno
	}
	return m.done, nil
}

func (m *mmsg) doRead(fd uintptr) bool {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])),
			uintptr(m.cnt), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			m.done = int(r)
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Nothing waiting: the level-triggered epoll said ready, but
			// another reader or a checksum failure (dropped at recv time)
			// emptied the queue.
		default:
			m.errno = errno
		}
		return true
	}
}

// send writes bufs[i] to dst[i] on the raw socket with one sendmmsg per
// call (more when the kernel stops early). It never blocks: a full socket
// buffer (EAGAIN) drops the rest. It returns how many were sent and, when
// one was refused, the index after which sending stopped is sent+1.
func (m *mmsg) send(rc syscall.RawConn, v6 bool, bufs [][]byte, dst []netip.AddrPort) (int, error) {
	n := min(len(bufs), len(m.hdrs))
	for i := 0; i < n; i++ {
		b := bufs[i]
		if len(b) > 0 {
			m.iovs[i].Base = &b[0]
		} else {
			m.iovs[i].Base = nil
		}
		m.iovs[i].SetLen(len(b))
		m.hdrs[i].hdr.Namelen = putSockaddr(&m.names[i], dst[i], v6)
	}
	m.cnt, m.done, m.errno = n, 0, 0
	err := rc.Write(m.writeFn)
	for i := 0; i < n; i++ {
		m.iovs[i].Base = nil
	}
	if err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return m.done, m.errno
	}
	return m.done, nil
}

func (m *mmsg) doWrite(fd uintptr) bool {
	for m.done < m.cnt {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[m.done])),
			uintptr(m.cnt-m.done), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			m.done += int(r)
			continue
		case unix.EINTR:
			continue
		}
		m.errno = errno
		return true
	}
	return true
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
