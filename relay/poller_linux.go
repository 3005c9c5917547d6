package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// poller reads every UDP relay socket. The sockets sit in one epoll set
// (level-triggered) whose descriptor is itself registered with Go's
// netpoller, so one goroutine sleeps until any relay socket has data, then
// drains the ready ones with recvmmsg and sends the resulting ChannelData
// to the clients in one sendmmsg per listener: datagrams from many
// allocations leave in one system call. One goroutine (run) owns it; Close
// ends it.
type poller struct {
	// set in newPoller, never changed
	srv    *Server
	epfd   int
	file   *os.File
	rc     syscall.RawConn
	wakeFn func(fd uintptr) bool

	closing atomic.Bool

	// owned by the run goroutine
	events []unix.EpollEvent
	bufs   [][]byte // arena: bufs[i][4:] is where datagram i is read
	rbufs  [][]byte // views bufs[i][4:]
	ns     []int
	trunc  []bool
	from   []netip.AddrPort
	used   int
	rm     *mmsg
	outs   []groupOut
	pkts   uint64
	byts   uint64
	drop   [numDrops]uint64
}

// groupOut is the pending peer->client batch of one UDP listener.
type groupOut struct {
	conn *udpbatch.Conn
	msgs []udpbatch.Message
}

const (
	pollerArena   = 256 // datagrams read per wake-up before a flush
	perSocketRead = 32  // datagrams one recvmmsg takes from one socket
	pollerEvents  = 128
)

func newPoller(srv *Server, groups []*udpGroup) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile registers it with the netpoller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("relay: epoll set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "relay-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("relay: epoll raw conn: %w", err)
	}
	p := &poller{
		srv:    srv,
		epfd:   epfd,
		file:   f,
		rc:     rc,
		events: make([]unix.EpollEvent, pollerEvents),
		bufs:   make([][]byte, pollerArena),
		rbufs:  make([][]byte, pollerArena),
		ns:     make([]int, pollerArena),
		trunc:  make([]bool, pollerArena),
		from:   make([]netip.AddrPort, pollerArena),
		rm:     newMmsg(perSocketRead),
		outs:   make([]groupOut, len(groups)),
	}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, bufSize)
		p.rbufs[i] = p.bufs[i][4:]
	}
	for i, g := range groups {
		p.outs[i] = groupOut{conn: g.out, msgs: make([]udpbatch.Message, 0, pollerArena)}
	}
	p.wakeFn = p.wake
	return p, nil
}

// add registers relay socket fd under slot.
func (p *poller) add(fd, slot int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(slot)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("relay: epoll add: %w", err)
	}
	return nil
}

// remove unregisters fd; the socket is closed right after.
func (p *poller) remove(fd int) {
	// ENOENT/EBADF: already gone with the descriptor; nothing to undo.
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// run is the poller goroutine; it returns when Close is called.
func (p *poller) run() {
	for !p.closing.Load() {
		if err := p.rc.Read(p.wakeFn); err != nil {
			return
		}
	}
}

// wake drains the ready sockets until none is ready, then asks the
// netpoller to wait (returns false).
func (p *poller) wake(uintptr) bool {
	for {
		if p.closing.Load() {
			return true
		}
		n, err := unix.EpollWait(p.epfd, p.events, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return true
		}
		if n == 0 {
			return false
		}
		now := p.srv.nanotime()
		for i := 0; i < n; i++ {
			if a := p.srv.slots.get(int(p.events[i].Fd)); a != nil && a.udp != nil {
				p.drain(a, now)
			}
		}
		p.flush()
		p.srv.stats.batches[dirToClient].Add(1)
	}
}

// drain reads what a's socket holds, up to perSocketRead datagrams per call
// and two calls per wake-up, so that one busy allocation cannot starve the
// others (level-triggered epoll reports it again).
func (p *poller) drain(a *alloc, now int64) {
	for round := 0; round < 2; round++ {
		if pollerArena-p.used < perSocketRead {
			p.flush()
		}
		k := perSocketRead
		end := p.used + k
		n, err := p.rm.recv(a.udp.rc, p.rbufs[p.used:end], p.ns[p.used:end], p.trunc[p.used:end], p.from[p.used:end])
		if err != nil || n == 0 {
			return
		}
		// handle advances p.used past every datagram it queues; the
		// bounds are fixed before it runs.
		base := p.used
		for i := base; i < base+n; i++ {
			p.handle(a, i, now)
		}
		if n < k {
			return
		}
	}
}

// handle relays datagram i of the arena, read on a's socket.
func (p *poller) handle(a *alloc, i int, now int64) {
	n, from := p.ns[i], p.from[i]
	if p.trunc[i] {
		p.drop[dropOversize]++
		return
	}
	t := a.table.Load()
	if t == nil {
		p.drop[dropNoPermission]++
		return
	}
	if ok, denied := t.permitted(from.Addr()); !ok {
		p.drop[dropNoPermission]++
		return
	} else if denied {
		p.drop[dropPeerDenied]++
		return
	}
	e := t.byPeerAddr(from)
	r := a.route.Load()
	if e == nil || r == nil || r.group == nil {
		// No channel (a Data indication), or a TCP/TLS client: pion
		// builds the message and writes it on the client's connection.
		pb := bufPool.Get().(*[]byte)
		copy((*pb)[4:], p.rbufs[i][:n])
		if !a.udp.enqueue(slowPacket{buf: pb, n: n, from: from}) {
			bufPool.Put(pb)
			p.drop[dropQueueFull]++
		}
		return
	}
	if e.denied {
		p.drop[dropPeerDenied]++
		return
	}
	if !a.allow(dirToClient, n, now) {
		p.drop[dropBandwidth]++
		return
	}
	b := p.bufs[i]
	binary.BigEndian.PutUint16(b[0:2], e.num)
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	o := &p.outs[r.group.idx]
	o.msgs = append(o.msgs, udpbatch.Message{Buf: b, N: 4 + n, Addr: r.client})
	a.count(dirToClient, n)
	p.pkts++
	p.byts += uint64(n)
	p.used = max(p.used, i+1)
}

// flush sends the pending ChannelData and frees the arena.
func (p *poller) flush() {
	st := &p.srv.stats
	for gi := range p.outs {
		o := &p.outs[gi]
		msgs := o.msgs
		for len(msgs) > 0 {
			n, err := o.conn.WriteBatch(msgs)
			if err == nil {
				break
			}
			if isClosed(err) {
				st.drops[dropSendError].Add(uint64(len(msgs) - n))
				break
			}
			// Datagram n was refused; count it and go on with the rest.
			st.drops[dropSendError].Add(1)
			msgs = msgs[min(n+1, len(msgs)):]
		}
		for i := range o.msgs {
			o.msgs[i].Buf = nil
		}
		o.msgs = o.msgs[:0]
	}
	p.used = 0
	if p.pkts > 0 {
		st.packets[dirToClient].Add(p.pkts)
		st.bytes[dirToClient].Add(p.byts)
		p.pkts, p.byts = 0, 0
	}
	for i := range p.drop {
		if p.drop[i] != 0 {
			st.drops[i].Add(p.drop[i])
			p.drop[i] = 0
		}
	}
}

// Close stops run and closes the epoll set. The caller waits for run.
func (p *poller) Close() error {
	p.closing.Store(true)
	return p.file.Close()
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed)
}
