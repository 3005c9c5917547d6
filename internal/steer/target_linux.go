package steer

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// OpenTarget opens a pair of non-blocking UDP sockets fit to be a
// target: bound to ephemeral loopback ports (127.0.0.1 and ::1), so that
// nothing but steering reaches them, and asking for each datagram's
// original destination (IP_RECVORIGDSTADDR, IPV6_RECVORIGDSTADDR). fd6 is
// -1 when the kernel or loopback has no IPv6. o sets their buffers. The
// caller closes them with unix.Close after RemoveTarget.
func OpenTarget(o sockopt.Options) (fd4, fd6 int, err error) {
	fd4, err = udpbatch.Open(netip.MustParseAddrPort("127.0.0.1:0"), o, false)
	if err != nil {
		return -1, -1, err
	}
	if err := unix.SetsockoptInt(fd4, unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); err != nil {
		unix.Close(fd4)
		return -1, -1, fmt.Errorf("steer: IP_RECVORIGDSTADDR: %w", err)
	}
	// EAFNOSUPPORT (ipv6.disable=1) or EADDRNOTAVAIL (no ::1 on lo,
	// disable_ipv6 set): IPv4 only. Bound to ::1 the socket is IPv6-only
	// (inet6_bind sets it for any specific address), which suits.
	fd6, err = udpbatch.Open(netip.MustParseAddrPort("[::1]:0"), o, false)
	if err != nil {
		return fd4, -1, nil
	}
	if err := unix.SetsockoptInt(fd6, unix.SOL_IPV6, unix.IPV6_RECVORIGDSTADDR, 1); err != nil {
		unix.Close(fd4)
		unix.Close(fd6)
		return -1, -1, fmt.Errorf("steer: IPV6_RECVORIGDSTADDR: %w", err)
	}
	return fd4, fd6, nil
}
