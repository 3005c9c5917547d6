package udpbatch

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP GSO (UDP_SEGMENT, Linux 4.18) lets one sendmmsg message carry a run
// of datagrams for one destination as consecutive iovecs: the kernel cuts
// the message into datagrams of the first one's size (the last may be
// shorter), and the run costs one pass through the UDP and IP layers
// instead of one per datagram; the device, or the receiving socket on
// loopback, does the segmentation. The limits stay under the kernel's:
// UDP_MAX_SEGMENTS (64 before Linux 5.4, 128 since) and one datagram of at
// most 64 KiB before segmentation, headers included.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65000
)

// gsoSpace is the room of one UDP_SEGMENT control message (a uint16).
var gsoSpace = unix.CmsgSpace(2)

// SendBatch is the scratch space of sendmmsg on a raw socket descriptor.
// Its owner (one goroutine) fills it with Add, datagram by datagram, which
// groups runs into UDP GSO messages when asked to, sends it with SendAll
// or Send, and empties it with Reset. It holds no descriptor and needs no
// closing.
//
// A datagram's position is the number of Add calls since Reset that went
// before it (ErrBatchFull calls excepted); message k carries the datagrams
// at positions First(k) to First(k)+Segments(k)-1.
type SendBatch struct {
	// set in NewSendBatch, never changed: a message uses consecutive
	// iovecs, one per datagram
	headers
	ctrl []byte // one UDP_SEGMENT control message per header

	// message k: the position of its first datagram, and their number
	first []int
	segs  []int

	// set by Reset
	v6, gso bool
	// the batch so far
	msgs, iov, pos int
	// the last message: open while it may take another segment; its
	// destination, segment size and bytes
	open  bool
	dst   netip.AddrPort
	size  int
	total int

	// sent UDP GSO messages and their datagrams, until TakeGSOCounts
	gsoMsgs, gsoSegs uint64
}

// NewSendBatch returns scratch space for up to n datagrams (at least 1)
// per batch, in as many messages.
func NewSendBatch(n int) *SendBatch {
	n = max(n, 1)
	b := &SendBatch{
		headers: newHeaders(n),
		ctrl:    make([]byte, n*gsoSpace),
		first:   make([]int, n),
		segs:    make([]int, n),
	}
	for k := range b.hdrs {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&b.ctrl[k*gsoSpace]))
		c.Level, c.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		c.SetLen(unix.CmsgLen(2))
	}
	return b
}

// Cap returns the most datagrams a batch holds.
func (b *SendBatch) Cap() int { return len(b.iovs) }

// Reset empties the batch, dropping its references to the datagrams'
// buffers, for datagrams to be sent from a socket of the given family
// (v6: AF_INET6), grouped into UDP GSO messages when gso is set.
func (b *SendBatch) Reset(v6, gso bool) {
	for i := 0; i < b.iov; i++ {
		b.iovs[i].Base = nil
	}
	b.v6, b.gso = v6, gso
	b.msgs, b.iov, b.pos = 0, 0, 0
	b.open = false
}

// Add appends datagram p for dst. With GSO, it joins the last message
// when that one goes to dst, p is not empty and not longer than the
// message's first datagram, no shorter datagram ended the message, and the
// segment and byte limits allow; otherwise it starts a message. It
// returns ErrBatchFull, adding nothing, when the batch has no room, and
// ErrAddressFamily, adding nothing but taking a position, when the socket
// cannot reach dst. The batch refers to p until Reset.
func (b *SendBatch) Add(p []byte, dst netip.AddrPort) error {
	if b.iov == len(b.iovs) {
		return ErrBatchFull
	}
	k := b.msgs - 1
	if b.open && dst == b.dst && len(p) > 0 && len(p) <= b.size && b.segs[k] < gsoMaxSegments &&
		b.total+len(p) <= gsoMaxBytes {
		b.iovs[b.iov].Base = &p[0]
		b.iovs[b.iov].SetLen(len(p))
		b.iov++
		b.pos++
		b.total += len(p)
		b.segs[k]++
		h := &b.hdrs[k].hdr
		h.SetIovlen(b.segs[k])
		if b.segs[k] == 2 {
			c := b.ctrl[k*gsoSpace : (k+1)*gsoSpace]
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(b.size))
			h.Control = &c[0]
			h.SetControllen(gsoSpace)
		}
		b.open = len(p) == b.size // a shorter datagram can only be the last segment
		return nil
	}
	k++
	h := &b.hdrs[k].hdr
	h.Namelen = putSockaddr(&b.names[k], dst, b.v6)
	if h.Namelen == 0 {
		b.pos++
		b.open = false // positions of a message stay consecutive
		return ErrAddressFamily
	}
	b.iovs[b.iov].Base = unsafe.SliceData(p)
	b.iovs[b.iov].SetLen(len(p))
	h.Iov = &b.iovs[b.iov]
	h.SetIovlen(1)
	h.Control = nil
	h.SetControllen(0)
	b.first[k], b.segs[k] = b.pos, 1
	b.iov++
	b.pos++
	b.msgs++
	b.open = b.gso && len(p) > 0
	b.dst, b.size, b.total = dst, len(p), len(p)
	return nil
}

// Len returns the number of messages in the batch.
func (b *SendBatch) Len() int { return b.msgs }

// Segments returns the number of datagrams of message k: more than one
// for a UDP GSO message.
func (b *SendBatch) Segments(k int) int { return b.segs[k] }

// First returns the position of message k's first datagram.
func (b *SendBatch) First(k int) int { return b.first[k] }

// Positions returns the number of positions taken since Reset: the
// datagrams added and those refused with ErrAddressFamily.
func (b *SendBatch) Positions() int { return b.pos }

// Send sends messages from, from+1, ... of the batch on fd without
// blocking and returns how many went. It stops at the first message the
// kernel refuses and returns that message's error as a unix.Errno:
// EAGAIN when the send buffer is full (nothing is lost: wait and call
// again from there), a GSORefused error for a UDP GSO message the kernel
// or the device cannot send as such, or an error of that destination
// (EPERM from a firewall rule, ENETUNREACH, EMSGSIZE). fd may be blocking
// or not: the call never blocks (MSG_DONTWAIT).
func (b *SendBatch) Send(fd, from int) (int, error) {
	done := from
	for done < b.msgs {
		r, errno := mmsg(unix.SYS_SENDMMSG, fd, &b.hdrs[done], b.msgs-done)
		if errno != 0 {
			return done - from, errno
		}
		if r <= 0 {
			// A kernel sends at least one message or fails; never spin.
			return done - from, unix.EAGAIN
		}
		for k := done; k < done+r; k++ {
			if b.segs[k] > 1 {
				b.gsoMsgs++
				b.gsoSegs += uint64(b.segs[k])
			}
		}
		done += r
	}
	return done - from, nil
}

// SendAll sends the whole batch on fd without ever waiting, as a data
// path that must not stall does. A message the kernel refuses for its
// destination (EPERM from a firewall rule, ENETUNREACH) is skipped and the
// rest sent; when the send buffer is full (EAGAIN) the rest of the batch
// is dropped rather than waited for: media is better lost than late.
// dropped is called for each message lost, with the position of its first
// datagram and their number. When the kernel refuses a UDP GSO message as
// such (GSORefused), that message and every later one go out one datagram
// per message instead, and SendAll returns the kernel's error so that the
// caller's GSO switch can decide whether to keep grouping (Sender does);
// otherwise it returns nil.
func (b *SendBatch) SendAll(fd int, dropped func(first, n int)) error {
	var gsoErr error
	for from := 0; from < b.msgs; {
		n, err := b.Send(fd, from)
		from += n
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			for ; from < b.msgs; from++ {
				dropped(b.first[from], b.segs[from])
			}
		case b.segs[from] > 1 && GSORefused(err):
			b.ungroup(from)
			if gsoErr == nil {
				gsoErr = err
			}
		default:
			dropped(b.first[from], b.segs[from])
			from++
		}
	}
	return gsoErr
}

// ungroup rebuilds messages k and later as one message per datagram. It
// writes from the last message down: the new index of a datagram is never
// below its old message's, so no message is overwritten before it is read.
func (b *SendBatch) ungroup(k int) {
	before := 0 // datagrams (iovecs) of messages 0..k-1
	for m := 0; m < k; m++ {
		before += b.segs[m]
	}
	j, iv := k+b.iov-before, b.iov
	for m := b.msgs - 1; m >= k; m-- {
		name, namelen := b.names[m], b.hdrs[m].hdr.Namelen
		first := b.first[m]
		for s := b.segs[m] - 1; s >= 0; s-- {
			j, iv = j-1, iv-1
			h := &b.hdrs[j].hdr
			b.names[j], h.Namelen = name, namelen
			h.Iov = &b.iovs[iv]
			h.SetIovlen(1)
			h.Control = nil
			h.SetControllen(0)
			b.first[j], b.segs[j] = first+s, 1
		}
	}
	b.msgs = k + b.iov - before
	b.open = false
}

// TakeGSOCounts returns the UDP GSO messages sent since the last call and
// the datagrams they carried, and starts counting again.
func (b *SendBatch) TakeGSOCounts() (msgs, datagrams uint64) {
	msgs, datagrams = b.gsoMsgs, b.gsoSegs
	b.gsoMsgs, b.gsoSegs = 0, 0
	return msgs, datagrams
}
