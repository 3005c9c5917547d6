package udpbatch

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RecvBatch is the scratch space of recvmmsg on a raw socket descriptor:
// one system call reads a batch of datagrams, each into its own buffer,
// with no allocation. Its owner (one goroutine) calls Recv and then reads
// the datagrams' sizes and sources with Size, Truncated and Addr, which
// stay valid until the next Recv. It holds no descriptor and needs no
// closing.
type RecvBatch struct {
	headers // set in NewRecvBatch: one iovec per header
	// ctrl holds ctrlSpace bytes of control messages per header, nil
	// unless made by NewRecvBatchOrigDst. Set once, never reallocated.
	ctrl []byte
}

// NewRecvBatch returns scratch space for reading up to n datagrams per
// call (at least 1).
func NewRecvBatch(n int) *RecvBatch {
	b := &RecvBatch{headers: newHeaders(max(n, 1))}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
	}
	return b
}

// NewRecvBatchOrigDst is NewRecvBatch with room for each datagram's
// control messages, for a socket with IP_RECVORIGDSTADDR (and, for IPv6,
// IPV6_RECVORIGDSTADDR) set: OrigDst then returns the address each
// datagram was sent to.
func NewRecvBatchOrigDst(n int) *RecvBatch {
	b := NewRecvBatch(n)
	b.ctrl = make([]byte, len(b.hdrs)*ctrlSpace)
	for i := range b.hdrs {
		b.hdrs[i].hdr.Control = &b.ctrl[i*ctrlSpace]
	}
	return b
}

// ctrlSpace is the control buffer per datagram: an IPV6_ORIGDSTADDR
// message (CMSG_SPACE of a sockaddr_in6, 48 bytes) with room to spare for
// one more option the socket may have on.
const ctrlSpace = 96

// Cap returns the most datagrams one Recv reads.
func (b *RecvBatch) Cap() int { return len(b.hdrs) }

// Recv reads up to min(len(bufs), Cap()) datagrams from fd without
// blocking, datagram i into bufs[i], and returns how many it read. When
// none is waiting it returns 0 and unix.EAGAIN: the caller waits for the
// socket (epoll, the netpoller) and calls again. Other errors come from
// the kernel as unix.Errno: an ICMP error queued on the socket (e.g.
// ECONNREFUSED) is reported, and consumed, by the call that meets it.
// fd may be blocking or not: the call never blocks (MSG_DONTWAIT).
func (b *RecvBatch) Recv(fd int, bufs [][]byte) (int, error) {
	n := min(len(bufs), len(b.hdrs))
	if n == 0 {
		return 0, nil
	}
	for i := 0; i < n; i++ {
		b.iovs[i].Base = unsafe.SliceData(bufs[i])
		b.iovs[i].SetLen(len(bufs[i]))
		h := &b.hdrs[i].hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
		if b.ctrl != nil {
			h.SetControllen(ctrlSpace)
		}
	}
	r, errno := mmsg(unix.SYS_RECVMMSG, fd, &b.hdrs[0], n)
	for i := 0; i < n; i++ {
		b.iovs[i].Base = nil // keep no caller buffer reachable
	}
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// Size returns the bytes of datagram i of the last Recv that are in its
// buffer: all of it, unless Truncated.
func (b *RecvBatch) Size(i int) int { return int(b.hdrs[i].n) }

// Truncated reports whether datagram i of the last Recv was longer than
// its buffer (MSG_TRUNC): the kernel dropped the rest.
func (b *RecvBatch) Truncated(i int) bool { return b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 }

// Addr returns the source of datagram i of the last Recv, an IPv4 peer of
// an IPv6 socket as an IPv4 address.
func (b *RecvBatch) Addr(i int) netip.AddrPort { return parseSockaddr(&b.names[i]) }

// OrigDst returns the address datagram i of the last Recv was sent to,
// from its IP_ORIGDSTADDR or IPV6_ORIGDSTADDR control message (an
// IPv4-mapped address as IPv4), or the zero AddrPort when it carried none
// (a RecvBatch not made by NewRecvBatchOrigDst, a socket without the
// option, or a control buffer the kernel truncated).
func (b *RecvBatch) OrigDst(i int) netip.AddrPort {
	if b.ctrl == nil {
		return netip.AddrPort{}
	}
	n := min(int(b.hdrs[i].hdr.Controllen), ctrlSpace)
	return parseOrigDst(b.ctrl[i*ctrlSpace : i*ctrlSpace+n])
}
