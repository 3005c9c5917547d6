package udpbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// RawSender sends IPv4 UDP datagrams from any local address and port
// through one raw socket, many per sendmmsg. A data path whose sockets
// each carry a few datagrams per round (a socket per call and leg, at 50
// packets a second each) would otherwise pay a sendmmsg of one datagram
// per packet; through a RawSender a round's datagrams from all those
// sockets leave in one system call, and the sending socket, which sits in
// an epoll set, no longer takes the write-space wake-up of every packet it
// sent when the kernel frees it (sock_wfree).
//
// The socket is AF_INET/SOCK_RAW/IPPROTO_RAW: send-only (the kernel
// delivers nothing to it) with IP_HDRINCL, so the RawSender writes each
// datagram's IPv4 and UDP headers and the UDP checksum itself; the kernel
// fills in the IP identification, total length and header checksum. It
// needs CAP_NET_RAW. The source a caller gives must be the address and
// port of a UDP socket it has bound, so that replies reach that socket:
// the RawSender cannot check this.
//
// Owned by one goroutine: Add, Send and Payload belong to it; Apply and
// Close too. Close releases the socket.
type RawSender struct {
	// set in OpenRaw, never changed
	fd    int
	ttl   byte
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4
	bufs  [][]byte // rawHeader + RawMaxPayload bytes each

	// the batch so far
	n int
}

// rawHeader is what a RawSender writes before each payload: an IPv4
// header without options and a UDP header.
const rawHeader = 20 + 8

// RawMaxPayload is the longest payload Add takes: a 1,500-byte packet.
// The kernel does not fragment an IP_HDRINCL packet longer than the
// route's MTU but refuses it (EMSGSIZE); longer datagrams go through
// their own socket, which fragments as UDP does.
const RawMaxPayload = 1500 - rawHeader

// ErrRawSource is what RawSender.Add returns for a source or destination
// a RawSender cannot write: not IPv4 (IPv4-mapped IPv6 addresses count as
// IPv4), or an unspecified source address. The datagram is not added; the
// caller sends it through its own socket.
var ErrRawSource = errors.New("udpbatch: raw sending needs IPv4 source and destination addresses")

// ErrRawTooLong is what RawSender.Add returns for a payload longer than
// RawMaxPayload; the caller sends it through its own socket.
var ErrRawTooLong = errors.New("udpbatch: datagram too long for raw sending")

// OpenRaw opens a RawSender for batches of up to n datagrams (at least 1)
// with socket options o (the mark, the send buffer). It fails when the
// process lacks CAP_NET_RAW (EPERM).
func OpenRaw(o sockopt.Options, n int) (*RawSender, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("udpbatch: raw socket: %w", err)
	}
	if err := o.ApplyFD(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	n = max(n, 1)
	r := &RawSender{
		fd:    fd,
		ttl:   defaultTTL(),
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet4, n),
		bufs:  make([][]byte, n),
	}
	for i := range r.hdrs {
		r.bufs[i] = make([]byte, rawHeader+RawMaxPayload)
		r.iovs[i].Base = &r.bufs[i][0]
		h := &r.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	return r, nil
}

// defaultTTL is the TTL a UDP socket of this network namespace sends with
// (net.ipv4.ip_default_ttl), 64 when it cannot be read.
func defaultTTL() byte {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_default_ttl")
	if err != nil {
		return 64
	}
	t, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || t < 1 || t > 255 {
		return 64
	}
	return byte(t)
}

// Apply sets o on the socket (a reload of the mark or buffer sizes).
func (r *RawSender) Apply(o sockopt.Options) error { return o.ApplyFD(r.fd) }

// SetMark sets the socket's SO_MARK, 0 included (Options leaves a zero
// mark alone).
func (r *RawSender) SetMark(mark uint32) error {
	if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		return fmt.Errorf("udpbatch: SO_MARK: %w", err)
	}
	return nil
}

// Cap returns the most datagrams a batch holds.
func (r *RawSender) Cap() int { return len(r.hdrs) }

// Len returns the datagrams added since the last Send.
func (r *RawSender) Len() int { return r.n }

// Add appends a datagram with payload p from src to dst, copying p. It
// returns ErrBatchFull when the batch has no room (Send, then add again),
// ErrRawSource or ErrRawTooLong for a datagram it cannot send, adding
// nothing then.
func (r *RawSender) Add(src, dst netip.AddrPort, p []byte) error {
	if r.n == len(r.hdrs) {
		return ErrBatchFull
	}
	if len(p) > RawMaxPayload {
		return ErrRawTooLong
	}
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	if !sa.Is4() || !da.Is4() || sa.IsUnspecified() {
		return ErrRawSource
	}
	b := r.bufs[r.n]
	s4, d4 := sa.As4(), da.As4()
	ulen := 8 + len(p)
	// IPv4 header: version 4, 5 words; DF set as on a UDP socket that
	// discovers the path MTU (the default); identification, total length
	// and checksum 0, which the kernel fills in for IP_HDRINCL.
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint32(b[2:6], 0)
	binary.BigEndian.PutUint16(b[6:8], 0x4000)
	b[8], b[9] = r.ttl, unix.IPPROTO_UDP
	b[10], b[11] = 0, 0
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:2], src.Port())
	binary.BigEndian.PutUint16(u[2:4], dst.Port())
	binary.BigEndian.PutUint16(u[4:6], uint16(ulen))
	u[6], u[7] = 0, 0
	copy(u[8:], p)
	// RFC 768: the checksum covers a pseudo-header (addresses, protocol,
	// UDP length), the header and the payload; a computed 0 is sent as
	// all ones, since 0 means "no checksum".
	sum := uint64(binary.BigEndian.Uint32(s4[:])) + uint64(binary.BigEndian.Uint32(d4[:])) +
		unix.IPPROTO_UDP + uint64(ulen)
	c := checksum(u[:ulen], sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], c)
	r.iovs[r.n].SetLen(rawHeader + len(p))
	r.names[r.n] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: d4}
	r.n++
	return nil
}

// Payload returns the payload of datagram i of the batch, valid until the
// next Add.
func (r *RawSender) Payload(i int) []byte {
	return r.bufs[i][rawHeader:int(r.iovs[i].Len)]
}

// Send sends the batch without ever waiting and empties it. A datagram the
// kernel refuses (EPERM from a firewall rule, ENETUNREACH, EMSGSIZE on a
// route with a small MTU) is skipped and the rest sent; when the send
// buffer is full (EAGAIN) the rest is dropped rather than waited for. For
// each datagram not sent it calls failed (when not nil) with its index and
// the kernel's error; the caller may send it another way (Payload stays
// valid until the next Add) or count it. It returns how many were not
// sent.
func (r *RawSender) Send(failed func(i int, err unix.Errno)) int {
	lost := 0
	fail := func(i int, err unix.Errno) {
		lost++
		if failed != nil {
			failed(i, err)
		}
	}
	for from := 0; from < r.n; {
		k, errno := mmsg(unix.SYS_SENDMMSG, r.fd, &r.hdrs[from], r.n-from)
		switch {
		case errno == unix.EAGAIN || (errno == 0 && k <= 0):
			// A kernel sends at least one message or fails; never spin.
			for ; from < r.n; from++ {
				fail(from, unix.EAGAIN)
			}
		case errno != 0:
			fail(from, errno)
			from++
		default:
			from += k
		}
	}
	r.n = 0
	return lost
}

// Close closes the socket. Idempotent.
func (r *RawSender) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// checksum returns the Internet checksum (RFC 1071) of b, with sum (the
// 16-bit words of a pseudo-header, added up) folded in.
func checksum(b []byte, sum uint64) uint16 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v >> 32
		sum += v & 0xffffffff
		b = b[8:]
	}
	if len(b) >= 4 {
		sum += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
