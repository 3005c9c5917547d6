package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// udpGroup is one configured UDP listener: SO_REUSEPORT shards bound to the
// same address, one per worker, sharing the table of their clients'
// allocations.
type udpGroup struct {
	// set in Start, never changed
	idx     int
	srv     *Server
	addr    netip.AddrPort
	v6      bool
	shards  []*udpShard
	clients clientTable
}

// stunQueue is how many client STUN messages may wait for pion per shard;
// more are dropped (queue_full) and the clients retransmit.
const stunQueue = 1024

// udpShard is one listener socket as pion sees it: a net.PacketConn whose
// ReadFrom returns the STUN messages its worker read (the worker relays
// ChannelData itself) and whose WriteTo sends pion's answers, Data
// indications and ChannelData. ReadFrom is called by one goroutine (pion's
// read loop for this socket); WriteTo by any.
type udpShard struct {
	// set in Start, never changed
	g     *udpGroup
	sock  sockFD
	local *net.UDPAddr
	w     *worker // the worker that reads the socket

	q pktQueue // STUN messages for pion

	wmu sync.Mutex // serialises the send scratch
	wm  *udpbatch.Sender
}

func newUDPShard(g *udpGroup, fd int) *udpShard {
	s := &udpShard{g: g, sock: sockFD{fd: fd}, wm: udpbatch.NewSender(1, nil)}
	s.q.init()
	return s
}

// ReadFrom implements net.PacketConn for pion's read loop. The relay
// inspects each STUN message first (see Server.inspect) and keeps those it
// answers itself.
func (s *udpShard) ReadFrom(p []byte) (int, net.Addr, error) {
	srv := s.g.srv
	for {
		sp, ok := s.q.pop()
		if !ok {
			return 0, nil, net.ErrClosed
		}
		buf := (*sp.buf)[4 : 4+sp.n]
		if srv.inspect(buf, sp.from, s.g.addr, false, s.replier(sp.from)) {
			bufPool.Put(sp.buf)
			continue
		}
		n := copy(p, buf)
		bufPool.Put(sp.buf)
		return n, net.UDPAddrFromAddrPort(sp.from), nil
	}
}

// replier returns a function that sends a reply to client c.
func (s *udpShard) replier(c netip.AddrPort) func([]byte) error {
	return func(b []byte) error { return s.send(b, c) }
}

func (s *udpShard) send(b []byte, dst netip.AddrPort) error {
	bufs, dsts := [1][]byte{b}, [1]netip.AddrPort{dst}
	s.wmu.Lock()
	failed, _ := s.sock.send(s.wm, s.g.v6, bufs[:], dsts[:]) // no GSO: one datagram
	s.wmu.Unlock()
	if failed != 0 {
		s.g.srv.stats.drops[dropSendError].Add(1)
		return errSendFailed
	}
	return nil
}

// WriteTo implements net.PacketConn: pion's responses to clients, and its
// Data indications and ChannelData for clients of this listener.
func (s *udpShard) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	ap := ua.AddrPort()
	if err := s.send(p, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close implements net.PacketConn: pion's read loop ends, and the socket
// closes once its worker is done with it. Idempotent.
func (s *udpShard) Close() error {
	s.q.close()
	s.sock.close()
	return nil
}

// LocalAddr implements net.PacketConn.
func (s *udpShard) LocalAddr() net.Addr { return s.local }

// SetDeadline implements net.PacketConn; pion sets none on its listeners.
func (s *udpShard) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.PacketConn.
func (s *udpShard) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.PacketConn.
func (s *udpShard) SetWriteDeadline(time.Time) error { return nil }

// sendQueue collects client->peer datagrams of one round and sends them
// grouped by relay socket, one sendmmsg per socket. Owned by one goroutine.
type sendQueue struct {
	allocs []*alloc
	bufs   [][]byte
	dsts   []netip.AddrPort
	done   []bool
	// scratch for one socket's group
	gb [][]byte
	gd []netip.AddrPort
}

func (q *sendQueue) init(n int) {
	q.allocs = make([]*alloc, 0, n)
	q.bufs = make([][]byte, 0, n)
	q.dsts = make([]netip.AddrPort, 0, n)
	q.done = make([]bool, n)
	q.gb = make([][]byte, 0, n)
	q.gd = make([]netip.AddrPort, 0, n)
}

func (q *sendQueue) len() int { return len(q.allocs) }

// add queues b for dst on a's relay socket. The caller flushes before the
// queue can overflow (it holds at most one arena).
func (q *sendQueue) add(a *alloc, b []byte, dst netip.AddrPort) {
	q.allocs = append(q.allocs, a)
	q.bufs = append(q.bufs, b)
	q.dsts = append(q.dsts, dst)
}

// flush sends everything queued, in order per relay socket, with sd, and
// returns how many datagrams the kernel refused and the error of a send
// that turned GSO off (see sockFD.send).
func (q *sendQueue) flush(sd *udpbatch.Sender) (failed int, gsoErr error) {
	n := len(q.allocs)
	clear(q.done[:n])
	for i := 0; i < n; i++ {
		if q.done[i] {
			continue
		}
		a := q.allocs[i]
		q.gb, q.gd = q.gb[:0], q.gd[:0]
		for j := i; j < n; j++ {
			if !q.done[j] && q.allocs[j] == a {
				q.gb = append(q.gb, q.bufs[j])
				q.gd = append(q.gd, q.dsts[j])
				q.done[j] = true
			}
		}
		f, err := a.udp.sock.send(sd, a.v6, q.gb, q.gd)
		failed += f
		if err != nil {
			gsoErr = err
		}
	}
	clear(q.bufs[:n])
	clear(q.allocs[:n])
	clear(q.gb[:cap(q.gb)])
	q.allocs, q.bufs, q.dsts = q.allocs[:0], q.bufs[:0], q.dsts[:0]
	return failed, gsoErr
}
