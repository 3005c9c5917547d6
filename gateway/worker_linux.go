package gateway

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/evloop"
	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// workerSys is the Linux side of a worker: raw non-blocking UDP sockets
// in an event loop (internal/evloop) whose goroutine is the worker's, an
// eventfd (the loop's Wake) for commands and a timer for housekeeping.
//
// The sockets are raw file descriptors, not *net.UDPConn: a Go socket
// sits in the runtime's own epoll set and every datagram would wake the
// netpoller and a goroutine of its own, which at 50 packets per second
// per stream costs more than the cryptography. Here a worker's epoll fd
// is the only descriptor the runtime polls for it: the worker goroutine
// parks in the netpoller until any of its sockets is readable, then
// drains every ready socket with recvmmsg. The worker is the loop's
// Handler and keeps only the packet logic.
type workerSys struct {
	// set in newWorker, never changed
	clock  func() int64 // monotonic ns since the gateway's epoch
	failFn func(i int)  // w.sendFailedAt, built once
	// steerFailed reports a dedicated socket the steerer refused (it is
	// then read on its own): w.g.steerRefused.
	steerFailed func(error)

	// set in open, never changed
	loop *evloop.Loop
	rx   *udpbatch.RecvBatch
	sd   *udpbatch.Sender
	gso  *udpbatch.GSO // this worker's UDP GSO switch
	bufs [][]byte
	// rbufs are views of bufs that offer maxPacket+1 bytes to the
	// kernel: a datagram longer than maxPacket reads as maxPacket+1
	// bytes (truncated) and is dropped as malformed.
	rbufs [][]byte

	// owned by the worker goroutine
	// socks maps a file descriptor to its socket.
	socks []*sock
	// pending sends of the current batch
	out []pending
	// the run being sent: its datagrams and destinations for the Sender
	run   []pending
	sbufs [][]byte
	sdsts []netip.AddrPort
	hk    evloop.Timer // housekeeping, every housekeepEvery
	full  bool         // a socket returned a full batch in this Ready call
	raw   [2]rawOut    // per leg: datagrams that leave their socket alone (rawsend_linux.go)
	steer steerSys     // zero without steering (steering_linux.go)
}

// pending is one packet waiting for sendmmsg: from which socket, to whom,
// and which receive buffer holds it.
type pending struct {
	s   *sock
	leg *leg
	dst netip.AddrPort
	buf int
	n   int
}

// housekeepEvery is the period of idle checks and scheduled re-keys.
const housekeepEvery = time.Second

// minBatch is the packets a coalesce window must be expected to collect
// before a worker sleeps for windows (evloop.Config): two, as before the
// loop was shared. At 50 packets per second per stream a gateway's worst
// cost is a wake-up per packet, which costs more than the cryptography,
// so it batches from a light load on (100 calls x 50 pps collect 3.5
// packets per 700 µs window); the relay, whose round trips cross it twice,
// waits for more.
const minBatch = 2

func (s *workerSys) open(batch int) error {
	loop, err := evloop.New(evloop.Config{Name: "gateway", Clock: s.clock, MinBatch: minBatch})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.loop = loop
	s.gso = udpbatch.NewGSO()
	s.rx, s.sd = udpbatch.NewRecvBatch(batch), udpbatch.NewSender(batch, s.gso)
	s.bufs, s.rbufs = make([][]byte, batch), make([][]byte, batch)
	for i := range s.bufs {
		s.bufs[i] = make([]byte, bufSize)
		s.rbufs[i] = s.bufs[i][:maxPacket+1]
	}
	s.out = make([]pending, 0, batch)
	s.sbufs, s.sdsts = make([][]byte, 0, batch), make([]netip.AddrPort, 0, batch)
	return nil
}

// wake interrupts the worker's wait. Safe for concurrent use.
func (s *workerSys) wake() {
	if s.loop != nil {
		s.loop.Wake()
	}
}

func (s *workerSys) register(so *sock) error {
	if err := s.loop.Add(so.fd, int32(so.fd)); err != nil {
		return fmt.Errorf("gateway: adding a socket to epoll: %w", err)
	}
	for so.fd >= len(s.socks) {
		s.socks = append(s.socks, make([]*sock, len(s.socks)+64)...)
	}
	s.socks[so.fd] = so
	s.steerAdd(so)
	return nil
}

// unregister takes so out of the epoll set, and first out of steering:
// the entry goes before the socket closes, so that its port is never
// steered to a worker that no longer knows it for longer than the
// datagrams already queued.
func (s *workerSys) unregister(so *sock) {
	s.steerRemove(so)
	s.loop.Remove(so.fd)
	if so.fd < len(s.socks) && s.socks[so.fd] == so {
		s.socks[so.fd] = nil
	}
}

func (s *workerSys) close() {
	s.closeSteering()
	s.closeRaw()
	if s.loop != nil {
		s.loop.Close()
	}
}

// run is the worker goroutine: the event loop serves the worker until it
// is stopped.
func (w *worker) run() {
	defer close(w.done)
	defer w.shutdown()
	s := &w.sys
	w.tick()
	s.hk.Init(func(now int64) {
		w.flushRaw() // before sessions may end
		w.checkRawRules()
		w.housekeep()
		s.loop.Schedule(&s.hk, now+int64(housekeepEvery))
	})
	s.loop.Schedule(&s.hk, w.now+int64(housekeepEvery))
	if err := s.loop.Run(w); err != nil {
		w.g.log.Error("waiting on epoll failed; worker stopping", "worker", w.id, "err", err)
	}
}

// Round implements evloop.Handler: the clock, the configuration and the
// coalesce window of the round.
func (w *worker) Round(now int64) {
	w.wall = time.Now()
	w.now = now
	w.cfg = w.g.cfg.Load()
	w.sys.loop.SetCoalesce(w.cfg.Coalesce.D())
	w.stats.wakeups.Add(1)
}

// Ready implements evloop.Handler: it serves the socket whose descriptor
// is tag.
func (w *worker) Ready(tag int32) (int, bool) {
	s := &w.sys
	s.full = false
	if fd := int(tag); fd >= 0 && fd < len(s.socks) {
		if so := s.socks[fd]; so != nil {
			return w.serve(so), s.full
		}
	}
	return 0, false
}

// Woken implements evloop.Handler: it runs the queued commands and stops
// the loop once the worker is stopping.
func (w *worker) Woken() {
	w.flushRaw() // before commands may end sessions
	if !w.runCommands() {
		w.sys.loop.Stop()
	}
}

// Flush implements evloop.Handler; serve sends as it goes, but for the
// datagrams queued for raw sending.
func (w *worker) Flush() {
	w.flush()
	w.flushRaw()
}

// maxRounds bounds the batches read from one socket per wake-up, so that
// one busy socket cannot starve the others (epoll is level-triggered: a
// socket with data left is reported again).
const maxRounds = 4

// serve drains up to maxRounds batches from so, handles every packet and
// sends the results with one sendmmsg per destination socket. A datagram
// read from a steering target (steering_linux.go) is handled as one read
// from the dedicated socket it was sent to.
func (w *worker) serve(so *sock) int {
	s := &w.sys
	rx := s.rx
	if so.target {
		rx = s.steer.rx
	}
	batch := min(w.cfg.Batch, len(s.bufs))
	total := 0
	for round := 0; round < maxRounds; round++ {
		k, err := rx.Recv(so.fd, s.rbufs[:batch])
		if err != nil || k == 0 {
			// EAGAIN: drained. Other errors (ECONNREFUSED from an ICMP
			// error queued on the socket) are consumed by the call.
			return total
		}
		total += k
		w.stats.batches.Add(1)
		if so.target {
			w.stats.steered.Add(uint64(k))
		}
		for i := 0; i < k; i++ {
			in := so
			if so.target {
				dst := rx.OrigDst(i)
				if in = s.steerFind(dst); in == nil {
					// Its socket closed after the datagram was steered, or
					// (a kernel without the control message) unknown.
					w.stats.drop(w.legOfPort(dst.Port()), reasonUnsteered)
					continue
				}
			}
			out, o, dst, m := w.handle(in, rx.Addr(i), s.bufs[i], rx.Size(i))
			if out != nil {
				s.out = append(s.out, pending{s: out, leg: o, dst: dst, buf: i, n: m})
			}
		}
		w.flush()
		if k < batch {
			return total
		}
		s.full = true
	}
	return total
}

// flush sends the pending packets, one sendmmsg per run of packets that
// leave from the same socket; a packet that leaves its socket alone is
// queued for raw sending at the end of the round, when it can.
func (w *worker) flush() {
	s := &w.sys
	for i := 0; i < len(s.out); {
		j := i + 1
		for j < len(s.out) && s.out[j].s == s.out[i].s {
			j++
		}
		if j > i+1 || !w.sendRaw(&s.out[i]) {
			w.sendRun(s.out[i:j])
		}
		i = j
	}
	clear(s.out)
	s.out = s.out[:0]
}

func (w *worker) sendRun(run []pending) {
	s := &w.sys
	so := run[0].s
	for i := range run {
		p := &run[i]
		s.sbufs = append(s.sbufs, s.bufs[p.buf][:p.n])
		s.sdsts = append(s.sdsts, p.dst)
	}
	// A packet the kernel refuses (EPERM from a firewall rule,
	// ENETUNREACH, a destination of the other family) counts against its
	// own leg; when the send buffer is full (EAGAIN) the rest is dropped
	// rather than stall every other session of the worker: UDP media is
	// better lost than late.
	s.run = run
	_, err := s.sd.Send(so.fd, so.v6, s.sbufs, s.sdsts, s.failFn)
	s.run = nil
	clear(s.sbufs)
	s.sbufs, s.sdsts = s.sbufs[:0], s.sdsts[:0]
	if err != nil {
		// The kernel refused UDP GSO persistently (udpbatch.GSO decides);
		// the packets went one per datagram.
		w.stats.gsoOff.Store(true)
		w.g.log.Warn("UDP GSO refused; sending one datagram per packet", "worker", w.id, "err", err)
	}
	if msgs, segs := s.sd.TakeGSOCounts(); msgs > 0 {
		w.stats.gsoSends.Add(msgs)
		w.stats.gsoSegments.Add(segs)
	}
}

// sendFailedAt counts packet i of the run being sent as not sent.
func (w *worker) sendFailedAt(i int) {
	p := &w.sys.run[i]
	w.sendFailed(p.s, p.leg, 1)
}

func (w *worker) sendFailed(so *sock, l *leg, k int) {
	for i := 0; i < k; i++ {
		w.stats.drop(so.leg, reasonSendError)
	}
	if l != nil {
		l.c.SendErrors += uint64(k)
	}
}

// applySockOpts sets leg id's mark and buffer sizes on every socket of the
// worker that belongs to the leg (a reload). It returns how many sockets
// refused.
func (w *worker) applySockOpts(id legID, lc *LegConfig, clearMark bool) int {
	opts := sockopt.Options{RecvBuffer: int(lc.RecvBuffer), SendBuffer: int(lc.SendBuffer), Mark: uint32(lc.Mark)}
	failed := 0
	if w.applyRawOpts(id, lc) {
		failed++
	}
	for _, so := range w.sys.socks {
		if so == nil || so.leg != id || so.target {
			continue
		}
		if err := opts.ApplyFD(so.fd); err != nil {
			failed++
		}
		if lc.Mark == 0 && clearMark {
			// sockopt leaves a zero mark alone; clear a previous one.
			if err := unix.SetsockoptInt(so.fd, unix.SOL_SOCKET, unix.SO_MARK, 0); err != nil {
				failed++
			}
		}
	}
	return failed
}

// sendDatagram sends one datagram from so to dst with sendto(2): the DTLS
// handshake's few records, which need no batching. Called only by so's
// worker.
func sendDatagram(so *sock, b []byte, dst netip.AddrPort) error {
	var sa unix.Sockaddr
	if so.v6 {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: netip.AddrFrom16(dst.Addr().As16()).As16()}
	} else {
		if !dst.Addr().Unmap().Is4() {
			return unix.EAFNOSUPPORT
		}
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().Unmap().As4()}
	}
	return unix.Sendto(so.fd, b, 0, sa)
}
