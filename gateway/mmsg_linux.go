package gateway

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>; Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgBatch is the scratch space of recvmmsg or sendmmsg on raw file
// descriptors. hdrs point into iovs and names, which are never
// reallocated. Owned by one worker.
type mmsgBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
}

func newMmsgBatch(n int) mmsgBatch {
	b := mmsgBatch{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
	}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// recv reads up to len(bufs) datagrams from fd without blocking. Each
// buffer offers maxPacket+1 bytes to the kernel, so a datagram longer than
// maxPacket shows as maxPacket+1 (MSG_TRUNC) and is dropped as malformed.
func (b *mmsgBatch) recv(fd int, bufs [][]byte) (int, error) {
	n := min(len(bufs), len(b.hdrs))
	for i := 0; i < n; i++ {
		b.iovs[i].Base = &bufs[i][0]
		b.iovs[i].SetLen(maxPacket + 1)
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.hdrs[i].hdr.Flags = 0
		b.hdrs[i].n = 0
	}
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])),
			uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

// length returns the size of datagram i of the last recv.
func (b *mmsgBatch) length(i int) int {
	if b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
		return maxPacket + 1
	}
	return int(b.hdrs[i].n)
}

// addr returns the source of datagram i of the last recv, IPv4-mapped
// addresses unmapped.
func (b *mmsgBatch) addr(i int) netip.AddrPort {
	sa := &b.names[i]
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// set fills slot i for sending p to dst from a socket of the given
// family. It is false when dst cannot be reached from it (IPv6 on an IPv4
// socket).
func (b *mmsgBatch) set(i int, p []byte, dst netip.AddrPort, v6 bool) bool {
	a := dst.Addr()
	sa := &b.names[i]
	switch {
	case !v6 && a.Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(dst.Port()), Addr: a.As4()}
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
	case v6:
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(dst.Port()), Addr: a.As16()}
		b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
	default:
		return false
	}
	b.iovs[i].Base = &p[0]
	b.iovs[i].SetLen(len(p))
	return true
}

// send sends slots [from, from+n) with one sendmmsg and returns how many
// went out. A datagram the kernel refuses ends the call with its error
// after the ones before it were sent.
func (b *mmsgBatch) send(fd, from, n int) (int, error) {
	if n <= from {
		return 0, nil
	}
	for {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[from])),
			uintptr(n-from), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

// release drops the references to packet buffers.
func (b *mmsgBatch) release(n int) {
	for i := 0; i < n && i < len(b.iovs); i++ {
		b.iovs[i].Base = nil
	}
}

// ntohs and htons convert a port to and from the network byte order the
// kernel keeps inside a sockaddr.
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
