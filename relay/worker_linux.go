package relay

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"time"

	"github.com/mediaedge/mediaedge/internal/evloop"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// worker runs one shard of the data path: shard id of every UDP listener
// and the relay sockets of the allocations made through it, all in one
// event loop (internal/evloop) whose goroutine serves both directions in
// the same round: ChannelData from clients to the relay sockets (one
// sendmmsg per relay socket), peer datagrams to the clients (one sendmmsg
// per listener for every allocation), STUN messages to pion's reader of
// the shard. The worker is the loop's Handler: it keeps only the packet
// logic. Start-up binds it, Close ends it; run is its only goroutine.
type worker struct {
	// set in newWorker, never changed
	srv  *Server
	id   int
	loop *evloop.Loop
	lis  []*udpShard // this worker's shard of each UDP listener, by group index

	// owned by the run goroutine
	bufs     [][]byte // arena: datagram i is read at bufs[i][4:] (relay) or bufs[i] (listener)
	rbufs    [][]byte // views bufs[i][4:]
	ns       []int
	trunc    []bool
	from     []netip.AddrPort
	used     int
	rm       *udpbatch.RecvBatch
	sd       *udpbatch.Sender
	toPeer   sendQueue
	toClient []clientOut // by group index
	pkts     [numDirs]uint64
	byts     [numDirs]uint64
	drop     [numDrops]uint64
	txid     [12]byte      // transaction ID of the next Data indication
	rng      *rand.ChaCha8 // draws them
	now      int64         // the round's time on srv.nanotime
	yield    bool          // pion has work queued: let it run before sleeping
	full     bool          // a read filled its batch in this Ready call
}

// clientOut is the pending peer->client batch of one UDP listener.
type clientOut struct {
	bufs [][]byte
	dsts []netip.AddrPort
}

const (
	arenaSize = 512 // datagrams a worker holds before it must flush
	readBatch = 64  // datagrams one recvmmsg takes
	maxRounds = 4   // recvmmsg calls per socket and wake-up
	// minBatch is the datagrams a coalesce window must be expected to
	// collect before the worker sleeps for windows (evloop.Config): a
	// round trip through the relay crosses it twice, so a sleep costs two
	// windows of RTT, and below this rate a wake-up per datagram is the
	// cheaper price. 2,000 round trips/s (4,000 datagrams/s, two per 500 µs
	// window) are relayed at once; 40,000 round trips/s coalesce.
	minBatch = 8
)

func newWorker(srv *Server, id int, groups []*udpGroup) (*worker, error) {
	loop, err := evloop.New(evloop.Config{Name: "relay", Clock: srv.nanotime, MinBatch: minBatch})
	if err != nil {
		return nil, fmt.Errorf("relay: worker %d: %w", id, err)
	}
	w := &worker{
		srv:      srv,
		id:       id,
		loop:     loop,
		bufs:     make([][]byte, arenaSize),
		rbufs:    make([][]byte, arenaSize),
		ns:       make([]int, arenaSize),
		trunc:    make([]bool, arenaSize),
		from:     make([]netip.AddrPort, arenaSize),
		rm:       udpbatch.NewRecvBatch(readBatch),
		sd:       udpbatch.NewSender(readBatch, srv.gso),
		toClient: make([]clientOut, len(groups)),
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		loop.Close()
		return nil, fmt.Errorf("relay: worker %d: seeding transaction IDs: %w", id, err)
	}
	w.rng = rand.NewChaCha8(seed)
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
		// Listener shards are tagged below zero, relay sockets by slot.
		if err := loop.Add(sh.sock.fd, int32(-1-gi)); err != nil {
			loop.Close()
			return nil, fmt.Errorf("relay: worker %d: adding a listener: %w", id, err)
		}
	}
	return w, nil
}

// add registers relay socket fd under slot. Safe for concurrent use.
func (w *worker) add(fd, slot int) error {
	if err := w.loop.Add(fd, int32(slot)); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// remove unregisters fd before it is closed. Safe for concurrent use.
func (w *worker) remove(fd int) { w.loop.Remove(fd) }

// run is the worker goroutine; it returns when Close is called.
func (w *worker) run() {
	if err := w.loop.Run(w); err != nil {
		w.srv.log.Error("data path worker stopped", "worker", w.id, "err", err)
	}
}

// Round implements evloop.Handler: it starts a round. The coalesce
// window follows reloads.
func (w *worker) Round(now int64) {
	w.now = now
	w.yield = false
	w.loop.SetCoalesce(time.Duration(w.srv.coalesce.Load()))
}

// Ready implements evloop.Handler: it serves a listener shard (tag below
// zero) or the relay socket of the allocation in slot tag.
func (w *worker) Ready(tag int32) (int, bool) {
	w.full = false
	if tag < 0 {
		return w.serveListener(int(-1 - tag)), w.full
	}
	if a := w.srv.slots.get(int(tag)); a != nil && a.udp != nil {
		return w.serveRelay(a, w.now), w.full
	}
	return 0, false
}

// Woken implements evloop.Handler; the relay never calls Wake.
func (w *worker) Woken() {}

// Flush implements evloop.Handler: it sends what the round produced and
// publishes the counters.
func (w *worker) Flush() {
	w.flush()
	w.srv.stats.wakeups.Add(1)
	if w.yield {
		// pion's reader of a shard has STUN messages: with one
		// processor it would otherwise wait for the next preemption.
		runtime.Gosched()
	}
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
	kind, num, ln := classifyClient(buf)
	switch kind {
	case clientSTUN: // pion's
		pb := bufPool.Get().(*[]byte)
		copy((*pb)[4:], buf)
		if !sh.q.push(slowPacket{buf: pb, n: n, from: src}, stunQueue) {
			bufPool.Put(pb)
			w.drop[dropQueueFull]++
			return
		}
		w.yield = true
		return
	case clientMalformed:
		// Junk never reaches pion's queue, where it would hold up
		// legitimate requests behind it.
		w.drop[dropMalformed]++
		return
	}
	a := sh.g.clients.get(src)
	if a == nil {
		w.drop[dropNoAllocation]++
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
	if e == nil && r != nil && r.group != nil {
		// No channel, a UDP client: a Data indication, built in place
		// (see putDataIndication).
		_, _ = w.rng.Read(w.txid[:])
		if m := putDataIndication(w.bufs[i], n, from, &w.txid); m > 0 {
			o := &w.toClient[r.group.idx]
			o.bufs = append(o.bufs, w.bufs[i][:m])
			o.dsts = append(o.dsts, r.client)
			a.count(dirToClient, n)
			w.pkts[dirToClient]++
			w.byts[dirToClient] += uint64(n)
			return
		}
	}
	if e == nil || r == nil || r.group == nil {
		// A TCP/TLS client, or a Data indication too large to build in
		// place: pion builds the message and writes it to the client.
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
	var failed int
	var gsoErr error
	if w.toPeer.len() > 0 {
		failed, gsoErr = w.toPeer.flush(w.sd)
	}
	for gi := range w.toClient {
		o := &w.toClient[gi]
		if len(o.bufs) == 0 {
			continue
		}
		f, err := w.lis[gi].sock.send(w.sd, w.lis[gi].g.v6, o.bufs, o.dsts)
		failed += f
		if err != nil {
			gsoErr = err
		}
		clear(o.bufs)
		o.bufs, o.dsts = o.bufs[:0], o.dsts[:0]
	}
	if gsoErr != nil {
		w.srv.gsoDisabled(gsoErr)
	}
	w.used = 0
	if _, segs := w.sd.TakeGSOCounts(); segs > 0 {
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

// Close stops run and closes the event loop. The caller waits for run.
func (w *worker) Close() error { return w.loop.Close() }
