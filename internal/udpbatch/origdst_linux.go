package udpbatch

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// parseOrigDst finds the first IP_ORIGDSTADDR or IPV6_ORIGDSTADDR control
// message in b (the control bytes recvmsg wrote) and decodes the address
// it carries, an IPv4-mapped address unmapped. Anything else, or a
// message cut short, yields the zero AddrPort. It does not allocate (unix.ParseSocketControlMessage
// does).
func parseOrigDst(b []byte) netip.AddrPort {
	const hdr = unix.SizeofCmsghdr
	for len(b) >= hdr {
		// struct cmsghdr: a size_t length, then level and type; read
		// field by field, since the bytes need not be aligned.
		var l uint64
		if unix.SizeofPtr == 8 {
			l = binary.NativeEndian.Uint64(b)
		} else {
			l = uint64(binary.NativeEndian.Uint32(b))
		}
		if l < hdr || l > uint64(len(b)) {
			return netip.AddrPort{}
		}
		level := int32(binary.NativeEndian.Uint32(b[unix.SizeofPtr:]))
		typ := int32(binary.NativeEndian.Uint32(b[unix.SizeofPtr+4:]))
		data := b[hdr:l]
		switch {
		case level == unix.SOL_IP && typ == unix.IP_ORIGDSTADDR:
			// struct sockaddr_in: family, port (network order), address.
			if len(data) < unix.SizeofSockaddrInet4 || binary.NativeEndian.Uint16(data) != unix.AF_INET {
				return netip.AddrPort{}
			}
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(data[4:8])), binary.BigEndian.Uint16(data[2:4]))
		case level == unix.SOL_IPV6 && typ == unix.IPV6_ORIGDSTADDR:
			// struct sockaddr_in6: family, port, flowinfo, address, scope.
			if len(data) < unix.SizeofSockaddrInet6 || binary.NativeEndian.Uint16(data) != unix.AF_INET6 {
				return netip.AddrPort{}
			}
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(data[8:24])).Unmap(), binary.BigEndian.Uint16(data[2:4]))
		}
		// Messages are padded to the alignment of the header's length
		// field (CMSG_ALIGN).
		next := (l + unix.SizeofPtr - 1) &^ (unix.SizeofPtr - 1)
		if next >= uint64(len(b)) {
			break
		}
		b = b[next:]
	}
	return netip.AddrPort{}
}
