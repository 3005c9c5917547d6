package udpbatch

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// Open opens a UDP socket for the raw-descriptor data path, applies o
// before bind (so that a mark is in place for the first packet) and binds
// it to ap (port 0: any free port). The socket is non-blocking and
// close-on-exec, and in no epoll set; the caller owns the descriptor and
// closes it with unix.Close. An IPv6 socket serves IPv4 peers too, as
// IPv4-mapped addresses, only when dualStack is set: otherwise it gets
// IPV6_V6ONLY, whatever net.ipv6.bindv6only says. A port another socket
// holds fails with an error for which IsAddrInUse is true.
func Open(ap netip.AddrPort, o sockopt.Options, dualStack bool) (int, error) {
	a := ap.Addr()
	if !a.IsValid() || a.Zone() != "" {
		return -1, fmt.Errorf("udpbatch: cannot bind %s: want an IP address without zone", ap)
	}
	domain := unix.AF_INET
	if a.Is6() {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("udpbatch: socket: %w", err)
	}
	if err := setup(fd, ap, o, dualStack); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func setup(fd int, ap netip.AddrPort, o sockopt.Options, dualStack bool) error {
	var sa unix.Sockaddr
	if a := ap.Addr(); a.Is6() {
		v6only := 1
		if dualStack {
			v6only = 0
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			return fmt.Errorf("udpbatch: IPV6_V6ONLY: %w", err)
		}
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	if err := o.ApplyFD(fd); err != nil {
		return err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("udpbatch: bind %s: %w", ap, err)
	}
	return nil
}

// LocalAddr returns the address fd is bound to, an IPv4-mapped address
// unmapped.
func LocalAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("udpbatch: getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("udpbatch: getsockname: unexpected address family %T", sa)
}

// GSOSupported reports whether the kernel knows UDP GSO (UDP_SEGMENT,
// Linux 4.18). A kernel without it ignores the control message and would
// send a run as one long datagram, so callers probe before grouping.
func GSOSupported() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT, 0) == nil
}

// GSORefused reports whether err is how the kernel refuses to send a UDP
// GSO message as such, so that its datagrams may still go one by one:
// EIO when the route's device cannot compute the checksums (or IPsec
// transforms the packet), EINVAL when a segment is larger than the path
// MTU allows or the run exceeds the segment limit, ENOPROTOOPT or
// EOPNOTSUPP when the socket does not do UDP_SEGMENT. Whether to stop
// grouping is GSO's decision, not the caller's.
func GSORefused(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP)
}
