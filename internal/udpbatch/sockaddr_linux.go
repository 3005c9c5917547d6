package udpbatch

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket addresses are read and written in place, in the RawSockaddrInet6
// each message header points to (large enough for either family), so that
// no per-datagram unix.Sockaddr is allocated.

// parseSockaddr decodes the source address the kernel wrote, unmapping
// IPv4-mapped IPv6 addresses (an IPv4 peer of a dual-stack socket reads
// as IPv4). An unknown family decodes as the zero AddrPort.
func parseSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// putSockaddr encodes ap for a socket of the given family and returns the
// sockaddr's length, or 0 when the socket cannot reach ap: an IPv4 socket
// takes IPv4 addresses (IPv4-mapped ones unmapped), an IPv6 socket takes
// both families (IPv4 as mapped addresses, which a dual-stack socket sends
// as IPv4 and an IPV6_V6ONLY socket refuses with ENETUNREACH).
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	if !v6 {
		if a = a.Unmap(); !a.Is4() {
			return 0
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(ap.Port()), Addr: a.As4()}
		return unix.SizeofSockaddrInet4
	}
	if !a.IsValid() {
		return 0
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ap.Port()), Addr: a.As16()}
	return unix.SizeofSockaddrInet6
}

// ntohs and htons convert a port to and from the network byte order the
// kernel keeps inside a sockaddr, whatever the host's byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func htons(p uint16) uint16 {
	var out uint16
	b := (*[2]byte)(unsafe.Pointer(&out))
	b[0], b[1] = byte(p>>8), byte(p)
	return out
}
