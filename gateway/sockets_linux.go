package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// rawFD lets internal/sockopt apply its options to a raw socket: it is
// the syscall.RawConn of a file descriptor no Go runtime poller knows.
type rawFD int

func (fd rawFD) Control(f func(fd uintptr)) error  { f(uintptr(fd)); return nil }
func (fd rawFD) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (fd rawFD) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }

var _ syscall.RawConn = rawFD(0)

// SyscallConn makes rawFD a syscall.Conn for sockopt.Read.
func (fd rawFD) SyscallConn() (syscall.RawConn, error) { return fd, nil }

// openSock creates a non-blocking UDP socket with the leg's options and
// binds it to addr:port (port 0: any). The socket is not yet in any epoll
// set.
func openSock(addr netip.Addr, port uint16, lc *LegConfig) (*sock, error) {
	family, network := unix.AF_INET, "udp4"
	v6 := addr.Is6()
	if v6 {
		family, network = unix.AF_INET6, "udp6"
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if v6 && addr.IsUnspecified() {
		// "::" serves IPv4 peers too (as mapped addresses).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return nil, fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	opts := sockopt.Options{RecvBuffer: int(lc.RecvBuffer), SendBuffer: int(lc.SendBuffer), Mark: uint32(lc.Mark)}
	ap := netip.AddrPortFrom(addr, port)
	if err := opts.Control(network, ap.String(), rawFD(fd)); err != nil {
		return nil, err
	}
	var sa unix.Sockaddr
	if v6 {
		sa = &unix.SockaddrInet6{Port: int(port), Addr: addr.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(port), Addr: addr.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind %s: %w", ap, err)
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	switch a := local.(type) {
	case *unix.SockaddrInet4:
		ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		ap = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	ok = true
	return &sock{fd: fd, local: ap, v6: v6}, nil
}

// closeFD closes a socket's file descriptor.
func closeFD(fd int) { unix.Close(fd) }

// isAddrInUse reports a bind that failed because the port is taken.
func isAddrInUse(err error) bool { return errors.Is(err, unix.EADDRINUSE) }

// grantedBuffers reads the buffer sizes the kernel gave a socket.
func grantedBuffers(so *sock) (sockopt.Granted, error) { return sockopt.Read(rawFD(so.fd)) }
