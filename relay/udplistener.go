package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// listenBatch is how many datagrams one recvmmsg on a listener reads.
const listenBatch = 64

// udpGroup is one configured UDP listener: SO_REUSEPORT shards bound to the
// same address, sharing the table of their clients' allocations.
type udpGroup struct {
	// set in Start, never changed
	idx     int
	srv     *Server
	addr    netip.AddrPort
	shards  []*udpShard
	clients clientTable
	// out is the poller's batched writer on shard 0's socket: every
	// shard has the same local address, so any of them reaches a client.
	// Only the poller goroutine uses it.
	out *udpbatch.Conn
}

// udpShard is one listener socket as pion sees it: a net.PacketConn whose
// ReadFrom reads batches with recvmmsg, relays ChannelData of known
// channels straight to the relay sockets, and returns to pion only what it
// must handle (STUN messages, data of unknown channels). ReadFrom is called
// by one goroutine (pion's read loop for this socket); WriteTo by any.
type udpShard struct {
	// set in Start, never changed
	g  *udpGroup
	uc *net.UDPConn
	bc *udpbatch.Conn

	// owned by the reading goroutine
	msgs []udpbatch.Message
	n    int
	next int
	out  sendQueue
	pkts int
	byts int
	drop [numDrops]uint64
}

func newUDPShard(g *udpGroup, uc *net.UDPConn) *udpShard {
	s := &udpShard{g: g, uc: uc, bc: udpbatch.New(uc, listenBatch), msgs: make([]udpbatch.Message, listenBatch)}
	for i := range s.msgs {
		s.msgs[i].Buf = make([]byte, bufSize)
	}
	s.out.init(listenBatch)
	return s
}

// ReadFrom implements net.PacketConn for pion's read loop.
func (s *udpShard) ReadFrom(p []byte) (int, net.Addr, error) {
	srv := s.g.srv
	for {
		for s.next < s.n {
			m := &s.msgs[s.next]
			s.next++
			if s.fast(m) {
				continue
			}
			// Slow path: pion handles it. Send what is queued first so
			// that pion's work does not delay relayed media.
			s.flush()
			buf := m.Buf[:m.N]
			if srv.inspect(buf, m.Addr, s.g.addr, false, s.replier(m.Addr)) {
				continue
			}
			n := copy(p, buf)
			return n, net.UDPAddrFromAddrPort(m.Addr), nil
		}
		s.flush()
		n, err := s.bc.ReadBatch(s.msgs)
		if err != nil {
			return 0, nil, err
		}
		s.n, s.next = n, 0
		srv.stats.batches[dirToPeer].Add(1)
	}
}

// fast handles ChannelData from a client with an allocation on this
// listener and reports whether it did (relayed or dropped).
func (s *udpShard) fast(m *udpbatch.Message) bool {
	buf := m.Buf[:m.N]
	if len(buf) == 0 {
		return true
	}
	srv := s.g.srv
	pol := srv.policy.Load()
	if !pol.Client(m.Addr.Addr()) {
		s.drop[dropClientDenied]++
		return true
	}
	switch buf[0] >> 6 {
	case 0: // STUN: the slow path
		return false
	case 1: // ChannelData, channel 0x4000-0x7FFF
	default:
		s.drop[dropMalformed]++
		return true
	}
	if len(buf) < 4 {
		s.drop[dropMalformed]++
		return true
	}
	a := s.g.clients.get(m.Addr)
	if a == nil {
		s.drop[dropNoAllocation]++
		return true
	}
	num := binary.BigEndian.Uint16(buf[0:2])
	ln := int(binary.BigEndian.Uint16(buf[2:4]))
	if 4+ln > len(buf) {
		s.drop[dropMalformed]++
		return true
	}
	t := a.table.Load()
	if t == nil {
		s.drop[dropNoChannel]++
		return true
	}
	e := t.byNumber(num)
	switch {
	case e == nil:
		s.drop[dropNoChannel]++
		return true
	case e.denied:
		s.drop[dropPeerDenied]++
		return true
	}
	if ok, denied := t.permitted(e.peer.Addr()); !ok {
		s.drop[dropNoPermission]++
		return true
	} else if denied {
		s.drop[dropPeerDenied]++
		return true
	}
	if !a.allow(dirToPeer, ln, srv.nanotime()) {
		s.drop[dropBandwidth]++
		return true
	}
	s.out.add(a, buf[4:4+ln], e.peer)
	a.count(dirToPeer, ln)
	s.pkts++
	s.byts += ln
	return true
}

// flush sends the queued datagrams and publishes the counters.
func (s *udpShard) flush() {
	st := &s.g.srv.stats
	if s.out.len() > 0 {
		st.drops[dropSendError].Add(uint64(s.out.flush()))
	}
	if s.pkts > 0 {
		st.packets[dirToPeer].Add(uint64(s.pkts))
		st.bytes[dirToPeer].Add(uint64(s.byts))
		s.pkts, s.byts = 0, 0
	}
	for i := range s.drop {
		if s.drop[i] != 0 {
			st.drops[i].Add(s.drop[i])
			s.drop[i] = 0
		}
	}
}

// replier returns a function that sends a reply to client c.
func (s *udpShard) replier(c netip.AddrPort) func([]byte) error {
	return func(b []byte) error {
		_, err := s.uc.WriteToUDPAddrPort(b, c)
		return err
	}
}

// WriteTo implements net.PacketConn: pion's responses to clients, and its
// Data indications and ChannelData for clients of this listener.
func (s *udpShard) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	return s.uc.WriteToUDPAddrPort(p, ua.AddrPort())
}

// Close implements net.PacketConn.
func (s *udpShard) Close() error { return s.uc.Close() }

// LocalAddr implements net.PacketConn.
func (s *udpShard) LocalAddr() net.Addr { return s.uc.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (s *udpShard) SetDeadline(t time.Time) error { return s.uc.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (s *udpShard) SetReadDeadline(t time.Time) error { return s.uc.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (s *udpShard) SetWriteDeadline(t time.Time) error { return s.uc.SetWriteDeadline(t) }

// sendQueue collects client->peer datagrams of one batch and sends them
// grouped by relay socket, one sendmmsg per socket and batch. Owned by one
// goroutine.
type sendQueue struct {
	allocs []*alloc
	bufs   [][]byte
	dsts   []netip.AddrPort
	done   []bool
	// scratch for one socket's group
	gb []([]byte)
	gd []netip.AddrPort
	m  *mmsg
}

func (q *sendQueue) init(n int) {
	q.allocs = make([]*alloc, 0, n)
	q.bufs = make([][]byte, 0, n)
	q.dsts = make([]netip.AddrPort, 0, n)
	q.done = make([]bool, n)
	q.gb = make([][]byte, 0, n)
	q.gd = make([]netip.AddrPort, 0, n)
	q.m = newMmsg(n)
}

func (q *sendQueue) len() int { return len(q.allocs) }

func (q *sendQueue) add(a *alloc, b []byte, dst netip.AddrPort) {
	if len(q.allocs) == cap(q.allocs) {
		q.a0().srv.stats.drops[dropSendError].Add(uint64(q.flush()))
	}
	q.allocs = append(q.allocs, a)
	q.bufs = append(q.bufs, b)
	q.dsts = append(q.dsts, dst)
}

func (q *sendQueue) a0() *alloc { return q.allocs[0] }

// flush sends everything queued, in order per relay socket, and returns
// how many datagrams the kernel refused.
func (q *sendQueue) flush() int {
	failed := 0
	n := len(q.allocs)
	for i := 0; i < n; i++ {
		q.done[i] = false
	}
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
		failed += sendAll(q.m, a.udp, q.gb, q.gd)
	}
	for i := range q.bufs[:n] {
		q.bufs[i] = nil
		q.allocs[i] = nil
	}
	q.allocs, q.bufs, q.dsts = q.allocs[:0], q.bufs[:0], q.dsts[:0]
	return failed
}

// sendAll sends bufs on c's socket, skipping datagrams the kernel refuses,
// and returns how many were refused.
func sendAll(m *mmsg, c *relayConn, bufs [][]byte, dsts []netip.AddrPort) int {
	if c == nil {
		return len(bufs)
	}
	failed := 0
	for len(bufs) > 0 {
		n, err := m.send(c.rc, c.a.v6, bufs, dsts)
		if err == nil && n == len(bufs) {
			return failed
		}
		if err != nil && n == 0 && isClosed(err) {
			return failed + len(bufs)
		}
		// The datagram at n was refused (EAGAIN on a full buffer,
		// EPERM from a firewall, ...): count it and go on.
		failed++
		bufs, dsts = bufs[min(n+1, len(bufs)):], dsts[min(n+1, len(dsts)):]
	}
	return failed
}
