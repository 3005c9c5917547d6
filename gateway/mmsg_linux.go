package gateway

import (
	"errors"
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

// sendBatch is the scratch space of sendmmsg with UDP GSO (UDP_SEGMENT,
// Linux 4.18): one message may carry several packets for one destination
// as consecutive iovecs, which the kernel sends as separate datagrams of
// the first packet's size (the last may be shorter). A run of packets to
// the same peer then costs one pass through the UDP and IP layers instead
// of one per packet. Owned by one worker.
type sendBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec // flat: message i uses iovs[first[i]:first[i]+count[i]]
	names []unix.RawSockaddrInet6
	oob   []byte
	first []int // run index of message i's first packet
	count []int // packets in message i
}

const (
	gsoCmsgSpace = 24 // unix.CmsgSpace(2)
	// maxGSOSegments stays under the kernel's UDP_MAX_SEGMENTS (128 in
	// 6.x) and maxGSOBytes under the 64 KiB datagram limit.
	maxGSOSegments = 64
	maxGSOBytes    = 60000
)

func newSendBatch(n int) sendBatch {
	b := sendBatch{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		oob:   make([]byte, n*gsoCmsgSpace),
		first: make([]int, n),
		count: make([]int, n),
	}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// build turns the start of run into messages, grouping consecutive packets
// to one destination when gso is set. Packets that cannot be sent from a
// socket of this family are passed to refuse. It returns the number of
// messages and of packets of run it consumed.
func (b *sendBatch) build(run []pending, bufs [][]byte, v6, gso bool, refuse func(p *pending)) (msgs, used int) {
	iv := 0
	for used < len(run) && msgs < len(b.hdrs) && iv < len(b.iovs) {
		p := &run[used]
		if !setName(&b.names[msgs], &b.hdrs[msgs].hdr, p.dst, v6) {
			refuse(p)
			used++
			continue
		}
		h := &b.hdrs[msgs].hdr
		b.first[msgs] = used
		k, total := 0, 0
		for used < len(run) && iv < len(b.iovs) {
			q := &run[used]
			if k > 0 && (!gso || q.dst != p.dst || q.n > p.n || k == maxGSOSegments || total+q.n > maxGSOBytes) {
				break
			}
			b.iovs[iv].Base = &bufs[q.buf][0]
			b.iovs[iv].SetLen(q.n)
			iv++
			k++
			total += q.n
			used++
			if q.n < p.n {
				break // a shorter packet can only be the last segment
			}
		}
		b.count[msgs] = k
		h.Iov = &b.iovs[iv-k]
		h.SetIovlen(k)
		if k > 1 {
			c := b.oob[msgs*gsoCmsgSpace : (msgs+1)*gsoCmsgSpace]
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(p.n)
			h.Control = &c[0]
			h.SetControllen(gsoCmsgSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		msgs++
	}
	return msgs, used
}

// send sends messages [from, n) with one sendmmsg and returns how many
// went out. A message the kernel refuses ends the call with its error
// after the ones before it were sent.
func (b *sendBatch) send(fd, from, n int) (int, error) {
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
func (b *sendBatch) release() {
	for i := range b.iovs {
		b.iovs[i].Base = nil
	}
}

// setName writes dst as the message's destination. It is false when dst
// cannot be reached from a socket of this family (IPv6 on IPv4).
func setName(sa *unix.RawSockaddrInet6, h *unix.Msghdr, dst netip.AddrPort, v6 bool) bool {
	a := dst.Addr()
	switch {
	case !v6 && a.Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(dst.Port()), Addr: a.As4()}
		h.Namelen = unix.SizeofSockaddrInet4
	case v6:
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(dst.Port()), Addr: a.As16()}
		h.Namelen = unix.SizeofSockaddrInet6
	default:
		return false
	}
	return true
}

// gsoRefused reports the errors of a kernel or device that cannot send a
// UDP GSO message: EIO (no checksum offload on the route's device),
// EINVAL, ENOPROTOOPT (no UDP_SEGMENT).
func gsoRefused(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOPROTOOPT) ||
		errors.Is(err, unix.EOPNOTSUPP)
}
