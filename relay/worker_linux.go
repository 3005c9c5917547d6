package relay

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// worker runs one shard of the data path: shard id of every UDP listener
// and the relay sockets of the allocations made through it, all in one
// epoll set whose descriptor sits in Go's netpoller. One goroutine (run)
// sleeps until any of its sockets has data, then serves both directions in
// the same round: ChannelData from clients to the relay sockets (one
// sendmmsg per relay socket), peer datagrams to the clients (one sendmmsg
// per listener for every allocation), STUN messages to pion's reader of the
// shard. Start-up binds it, Close ends it; run is its only goroutine.
type worker struct {
	// set in newWorker, never changed
	srv    *Server
	id     int
	epfd   int
	file   *os.File // holds epfd in the runtime's netpoller
	rc     syscall.RawConn
	pollFn func(fd uintptr) bool
	lis    []*udpShard // this worker's shard of each UDP listener, by group index

	closing atomic.Bool

	// owned by the run goroutine
	events   []unix.EpollEvent
	bufs     [][]byte // arena: datagram i is read at bufs[i][4:] (relay) or bufs[i] (listener)
	rbufs    [][]byte // views bufs[i][4:]
	ns       []int
	trunc    []bool
	from     []netip.AddrPort
	used     int
	rm       *udpbatch.RecvBatch
	sm       *udpbatch.SendBatch
	toPeer   sendQueue
	toClient []clientOut // by group index
	pkts     [numDirs]uint64
	byts     [numDirs]uint64
	drop     [numDrops]uint64
	yield    bool  // pion has work queued: let it run before sleeping
	full     bool  // a read filled its batch this round
	lastPkts int64 // when the last round with datagrams ran
	// coalescing: the last round slept for the coalesce window
	coalescing bool
}

// clientOut is the pending peer->client batch of one UDP listener.
type clientOut struct {
	bufs [][]byte
	dsts []netip.AddrPort
}

const (
	arenaSize   = 512 // datagrams a worker holds before it must flush
	readBatch   = 64  // datagrams one recvmmsg takes
	maxRounds   = 4   // recvmmsg calls per socket and wake-up
	epollEvents = 256
)

func newWorker(srv *Server, id int, groups []*udpGroup) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll_create1: %w", err)
	}
	// A non-blocking epoll descriptor is pollable: os.NewFile registers it
	// with the runtime's netpoller (an epoll set inside an epoll set),
	// which reports it readable when any of its sockets is.
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
	w := &worker{
		srv:      srv,
		id:       id,
		epfd:     epfd,
		file:     f,
		rc:       rc,
		events:   make([]unix.EpollEvent, epollEvents),
		bufs:     make([][]byte, arenaSize),
		rbufs:    make([][]byte, arenaSize),
		ns:       make([]int, arenaSize),
		trunc:    make([]bool, arenaSize),
		from:     make([]netip.AddrPort, arenaSize),
		rm:       udpbatch.NewRecvBatch(readBatch),
		sm:       udpbatch.NewSendBatch(readBatch),
		toClient: make([]clientOut, len(groups)),
	}
	w.pollFn = w.poll
	for i := range w.bufs {
		w.bufs[i] = make([]byte, bufSize)
		w.rbufs[i] = w.bufs[i][4:]
	}
	w.toPeer.init(arenaSize)
	for gi, g := range groups {
		sh := g.shards[id]
		sh.w = w
		w.lis = append(w.lis, sh)
		w.toClient[gi] = clientOut{bufs: make([][]byte, 0, arenaSize), dsts: make([]netip.AddrPort, 0, arenaSize)}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(-1 - gi)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, sh.sock.fd, &ev); err != nil {
			f.Close()
			return nil, fmt.Errorf("relay: epoll add listener: %w", err)
		}
	}
	return w, nil
}

// add registers relay socket fd under slot. Safe for concurrent use.
func (w *worker) add(fd, slot int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(slot)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("relay: epoll add: %w", err)
	}
	return nil
}

// remove unregisters fd before it is closed. Safe for concurrent use.
func (w *worker) remove(fd int) {
	// ENOENT/EBADF: already gone with the descriptor; nothing to undo.
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// run is the worker goroutine; it returns when Close is called.
func (w *worker) run() {
	for !w.closing.Load() {
		if err := w.rc.Read(w.pollFn); err != nil {
			return
		}
	}
}

// poll serves everything ready and keeps serving while datagrams keep
// coming. It reports true when the worker must stop, false to wait in the
// netpoller for the next datagram.
//
// Coalescing: relayed media arrives a few packets per millisecond per call,
// and a worker that goes back to sleep after each datagram pays a wake-up
// (two context switches) and a system call per datagram and direction,
// which costs more than relaying it. When datagrams arrive within half the
// coalesce window of each other, the worker instead sleeps for the window
// and then takes everything that arrived meanwhile, a batch per socket, at
// the price of at most one window of added latency per hop. A lone datagram
// (a quiet relay) is served at once. A round that filled a batch polls again
// without sleeping: the worker is saturated and every system call already
// carries many datagrams.
func (w *worker) poll(uintptr) bool {
	for {
		if w.closing.Load() {
			return true
		}
		n := epollNow(w.epfd, w.events)
		if n <= 0 {
			return false
		}
		now := w.srv.nanotime()
		w.full, w.yield = false, false
		pkts := 0
		for i := 0; i < n; i++ {
			if tag := int(w.events[i].Fd); tag < 0 {
				pkts += w.serveListener(-1 - tag)
			} else if a := w.srv.slots.get(tag); a != nil && a.udp != nil {
				pkts += w.serveRelay(a, now)
			}
		}
		w.flush()
		w.srv.stats.wakeups.Add(1)
		if w.yield {
			// pion's reader of a shard has STUN messages: with one
			// processor it would otherwise wait for the next preemption.
			runtime.Gosched()
		}
		c := w.srv.coalesce.Load()
		if pkts == 0 || c == 0 {
			continue
		}
		// Coalesce while rounds keep collecting at least two datagrams;
		// start when datagrams come less than half a window apart.
		dense := pkts >= 2 && w.coalescing || now-w.lastPkts < c/2
		w.lastPkts = now
		w.coalescing = dense && !w.full
		if w.coalescing {
			sleepRaw(c)
		}
	}
}

// epollNow returns the ready events without blocking. epoll_pwait with a
// zero timeout never sleeps, so it is issued as a raw system call.
func epollNow(epfd int, events []unix.EpollEvent) int {
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
			uintptr(len(events)), 0, 0, 0)
		switch errno {
		case 0:
			return int(r)
		case unix.EINTR:
			continue
		}
		return -1
	}
}

// sleepRaw sleeps d nanoseconds (under a few milliseconds) without giving
// up the thread's processor: Go's timers are coarser than the window, and a
// blocking system call would let the scheduler hand the processor to
// another thread only to take it back. A signal (goroutine preemption) may
// cut the sleep short, which is harmless.
func sleepRaw(d int64) {
	ts := unix.NsecToTimespec(d)
	_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// room makes sure the arena can take a full read, flushing if needed.
func (w *worker) room() {
	if arenaSize-w.used < readBatch {
		w.flush()
	}
}

// serveListener reads the datagrams waiting on this worker's shard of
// group gi and returns how many it read.
func (w *worker) serveListener(gi int) int {
	sh := w.lis[gi]
	total := 0
	for round := 0; round < maxRounds; round++ {
		w.room()
		base := w.used
		end := base + readBatch
		k := sh.sock.recv(w.rm, w.bufs[base:end], w.ns[base:end], w.trunc[base:end], w.from[base:end])
		if k == 0 {
			return total
		}
		w.used += k
		total += k
		w.srv.stats.batches[dirToPeer].Add(1)
		for i := base; i < base+k; i++ {
			w.fromClient(sh, i)
		}
		if k < readBatch {
			return total
		}
		w.full = true
	}
	return total
}

// fromClient handles datagram i of the arena, read on listener shard sh:
// ChannelData of a known channel is queued for its relay socket, STUN goes
// to pion, anything else is dropped and counted.
func (w *worker) fromClient(sh *udpShard, i int) {
	n, src := w.ns[i], w.from[i]
	buf := w.bufs[i][:n]
	srv := w.srv
	switch {
	case w.trunc[i]:
		w.drop[dropOversize]++
		return
	case n == 0:
		w.drop[dropMalformed]++
		return
	case !srv.policy.Load().Client(src.Addr()):
		w.drop[dropClientDenied]++
		return
	}
	switch buf[0] >> 6 {
	case 0: // STUN: pion's
		pb := bufPool.Get().(*[]byte)
		copy((*pb)[4:], buf)
		if !sh.q.push(slowPacket{buf: pb, n: n, from: src}, stunQueue) {
			bufPool.Put(pb)
			w.drop[dropQueueFull]++
			return
		}
		w.yield = true
		return
	case 1: // ChannelData, channel 0x4000-0x7FFF
	default:
		w.drop[dropMalformed]++
		return
	}
	if n < 4 {
		w.drop[dropMalformed]++
		return
	}
	a := sh.g.clients.get(src)
	if a == nil {
		w.drop[dropNoAllocation]++
		return
	}
	num := binary.BigEndian.Uint16(buf[0:2])
	ln := int(binary.BigEndian.Uint16(buf[2:4]))
	if 4+ln > n {
		w.drop[dropMalformed]++
		return
	}
	t := a.table.Load()
	e := t.byNumber(num)
	switch {
	case e == nil:
		w.drop[dropNoChannel]++
		return
	case e.denied:
		w.drop[dropPeerDenied]++
		return
	}
	if ok, denied := t.permitted(e.peer.Addr()); !ok {
		w.drop[dropNoPermission]++
		return
	} else if denied {
		w.drop[dropPeerDenied]++
		return
	}
	if !a.allow(dirToPeer, ln, srv.nanotime()) {
		w.drop[dropBandwidth]++
		return
	}
	w.toPeer.add(a, buf[4:4+ln], e.peer)
	a.count(dirToPeer, ln)
	w.pkts[dirToPeer]++
	w.byts[dirToPeer] += uint64(ln)
}

// serveRelay reads what a's relay socket holds and returns how many
// datagrams it read.
//
// recvmmsg only learns that a socket is empty by trying once more after the
// last datagram, which costs a good part of reading one, and most relay
// sockets hold one or two datagrams per round. So each socket asks for as
// many as it gave last time (its hint); a read that fills the hint doubles
// it for the next round, and what it left behind is reported again by the
// level-triggered epoll set. A socket that fills whole batches is read up
// to maxRounds times per round.
func (w *worker) serveRelay(a *alloc, now int64) int {
	total := 0
	for round := 0; round < maxRounds; round++ {
		w.room()
		h := max(int(a.rhint), 1)
		base := w.used
		end := base + h
		k := a.udp.sock.recv(w.rm, w.rbufs[base:end], w.ns[base:end], w.trunc[base:end], w.from[base:end])
		if k == 0 {
			return total
		}
		w.used += k
		total += k
		w.srv.stats.batches[dirToClient].Add(1)
		for i := base; i < base+k; i++ {
			w.fromPeer(a, i, now)
		}
		if k < h {
			a.rhint = uint8(k)
			return total
		}
		if h < readBatch {
			a.rhint = uint8(min(2*h, readBatch))
			return total
		}
		w.full = true
	}
	return total
}

// fromPeer relays datagram i of the arena, read on a's relay socket.
func (w *worker) fromPeer(a *alloc, i int, now int64) {
	n, from := w.ns[i], w.from[i]
	if w.trunc[i] {
		w.drop[dropOversize]++
		return
	}
	t := a.table.Load()
	if ok, denied := t.permitted(from.Addr()); !ok {
		w.drop[dropNoPermission]++
		return
	} else if denied {
		w.drop[dropPeerDenied]++
		return
	}
	e := t.byPeerAddr(from)
	r := a.route.Load()
	if e != nil && e.denied {
		w.drop[dropPeerDenied]++
		return
	}
	if !a.allow(dirToClient, n, now) {
		w.drop[dropBandwidth]++
		return
	}
	if e == nil || r == nil || r.group == nil {
		// No channel (a Data indication), or a TCP/TLS client: pion
		// builds the message and writes it on the client's connection.
		pb := bufPool.Get().(*[]byte)
		copy((*pb)[4:], w.rbufs[i][:n])
		if !a.udp.q.push(slowPacket{buf: pb, n: n, from: from}, slowQueue) {
			bufPool.Put(pb)
			w.drop[dropQueueFull]++
			return
		}
		a.count(dirToClient, n)
		w.pkts[dirToClient]++
		w.byts[dirToClient] += uint64(n)
		w.yield = true
		return
	}
	b := w.bufs[i]
	binary.BigEndian.PutUint16(b[0:2], e.num)
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	o := &w.toClient[r.group.idx]
	o.bufs = append(o.bufs, b[:4+n])
	o.dsts = append(o.dsts, r.client)
	a.count(dirToClient, n)
	w.pkts[dirToClient]++
	w.byts[dirToClient] += uint64(n)
}

// flush sends everything pending, frees the arena and publishes the
// counters.
func (w *worker) flush() {
	st := &w.srv.stats
	gso := w.srv.gso.Load()
	failed, broken := 0, false
	if w.toPeer.len() > 0 {
		failed, broken = w.toPeer.flush(w.sm, gso)
	}
	for gi := range w.toClient {
		o := &w.toClient[gi]
		if len(o.bufs) == 0 {
			continue
		}
		f, b := w.lis[gi].sock.send(w.sm, w.lis[gi].g.v6, o.bufs, o.dsts, gso)
		failed += f
		broken = broken || b
		clear(o.bufs)
		o.bufs, o.dsts = o.bufs[:0], o.dsts[:0]
	}
	if broken {
		w.srv.disableGSO()
	}
	w.used = 0
	if _, segs := w.sm.TakeGSOCounts(); segs > 0 {
		st.gsoSegs.Add(segs)
	}
	if failed > 0 {
		st.drops[dropSendError].Add(uint64(failed))
	}
	for d := 0; d < numDirs; d++ {
		if w.pkts[d] > 0 {
			st.packets[d].Add(w.pkts[d])
			st.bytes[d].Add(w.byts[d])
			w.pkts[d], w.byts[d] = 0, 0
		}
	}
	for i := range w.drop {
		if w.drop[i] != 0 {
			st.drops[i].Add(w.drop[i])
			w.drop[i] = 0
		}
	}
}

// Close stops run and closes the epoll set. The caller waits for run.
func (w *worker) Close() error {
	w.closing.Store(true)
	return w.file.Close()
}
