package relay

import (
	"net/netip"
	"sync"
)

// slowPacket is a datagram a worker hands to one of pion's readers: a STUN
// message from a client, or a peer datagram pion must turn into a Data
// indication or write to a TCP/TLS client. buf comes from bufPool; the
// datagram is (*buf)[4:4+n].
type slowPacket struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

// bufSize is the size of every datagram buffer: room for a 4-byte
// ChannelData header in front of a payload up to a typical jumbo-free MTU.
const bufSize = 2048

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// pktQueue passes datagrams from a worker (push) to one reading goroutine
// (pop) without a channel: an idle queue is a few words inside its owner,
// and the slice exists only while datagrams wait. Safe for concurrent use;
// close wakes the reader and frees what is queued.
type pktQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	q      []slowPacket
	closed bool
}

func (q *pktQueue) init() { q.cond.L = &q.mu }

// push queues sp unless limit datagrams already wait or the queue is
// closed; the caller keeps sp.buf when it returns false.
func (q *pktQueue) push(sp slowPacket, limit int) bool {
	q.mu.Lock()
	if q.closed || len(q.q) >= limit {
		q.mu.Unlock()
		return false
	}
	q.q = append(q.q, sp)
	q.mu.Unlock()
	q.cond.Signal()
	return true
}

// pop waits for a datagram; false once the queue is closed.
func (q *pktQueue) pop() (slowPacket, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.q) == 0 {
		if q.closed {
			return slowPacket{}, false
		}
		q.cond.Wait()
	}
	sp := q.q[0]
	q.q[0] = slowPacket{}
	q.q = q.q[1:]
	if len(q.q) == 0 {
		q.q = nil // let the backing array go
	}
	return sp, true
}

// close ends pop and returns the queued buffers to the pool.
func (q *pktQueue) close() {
	q.mu.Lock()
	q.closed = true
	for _, sp := range q.q {
		bufPool.Put(sp.buf)
	}
	q.q = nil
	q.mu.Unlock()
	q.cond.Broadcast()
}
