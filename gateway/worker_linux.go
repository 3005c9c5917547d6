package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// workerSys is the Linux side of a worker: an epoll set over raw
// non-blocking UDP sockets and an eventfd that wakes it for commands.
//
// The sockets are raw file descriptors, not *net.UDPConn: a Go socket
// sits in the runtime's own epoll set and every datagram would wake the
// netpoller and a goroutine of its own, which at 50 packets per second
// per stream costs more than the cryptography. Here a worker's epoll fd
// is the only descriptor the runtime polls for it: the worker goroutine
// parks in the netpoller until any of its sockets is readable (no thread
// blocked in a system call, so the scheduler's monitor has nothing to
// hand off), then drains every ready socket with recvmmsg.
type workerSys struct {
	epfd, evfd int
	// file holds epfd in the runtime's netpoller; rc waits on it.
	file *os.File
	rc   syscall.RawConn
	poll func(fd uintptr) bool
	// socks maps a file descriptor to its socket (owned by the worker
	// goroutine).
	socks  []*sock
	events []unix.EpollEvent
	rx     *udpbatch.RecvBatch
	tx     *udpbatch.SendBatch
	bufs   [][]byte
	// rbufs are views of bufs that offer maxPacket+1 bytes to the
	// kernel: a datagram longer than maxPacket reads as maxPacket+1
	// bytes (truncated) and is dropped as malformed.
	rbufs [][]byte
	// pending sends of the current batch
	out []pending
	// per round (owned by the worker goroutine)
	hkDue    int64 // next housekeeping, monotonic ns
	lastPkts int64 // when the last round with packets ended
	full     bool  // a socket returned a full batch this round
	// coalescing: the last round slept for the coalesce window
	coalescing bool
	// gsoOff: the kernel lacks UDP GSO or refused it once; send datagram
	// by datagram
	gsoOff  bool
	stopped bool
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

func (s *workerSys) open(batch int) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("gateway: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return fmt.Errorf("gateway: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return fmt.Errorf("gateway: adding the eventfd to epoll: %w", err)
	}
	// A non-blocking epoll fd is pollable: os.NewFile registers it with
	// the runtime's netpoller (an epoll set inside an epoll set), which
	// reports it readable when any of its sockets is.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return fmt.Errorf("gateway: epoll fd: %w", err)
	}
	s.file = os.NewFile(uintptr(epfd), "gateway-epoll")
	rc, err := s.file.SyscallConn()
	if err != nil {
		s.file.Close()
		unix.Close(evfd)
		return fmt.Errorf("gateway: epoll fd: %w", err)
	}
	s.epfd, s.evfd, s.rc = epfd, evfd, rc
	s.events = make([]unix.EpollEvent, 256)
	s.rx, s.tx = udpbatch.NewRecvBatch(batch), udpbatch.NewSendBatch(batch)
	s.bufs, s.rbufs = make([][]byte, batch), make([][]byte, batch)
	for i := range s.bufs {
		s.bufs[i] = make([]byte, bufSize)
		s.rbufs[i] = s.bufs[i][:maxPacket+1]
	}
	// A kernel without UDP GSO (before Linux 4.18) would ignore the
	// segment size and send a run as one long datagram.
	s.gsoOff = !udpbatch.GSOSupported()
	s.out = make([]pending, 0, batch)
	return nil
}

// wake interrupts the worker's wait. Safe for concurrent use.
func (s *workerSys) wake() {
	var one = [8]byte{1}
	// EAGAIN means the counter is already non-zero: the worker will wake.
	_, _ = unix.Write(s.evfd, one[:])
}

func (s *workerSys) register(so *sock) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(so.fd)}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, so.fd, &ev); err != nil {
		return fmt.Errorf("gateway: adding a socket to epoll: %w", err)
	}
	for so.fd >= len(s.socks) {
		s.socks = append(s.socks, make([]*sock, len(s.socks)+64)...)
	}
	s.socks[so.fd] = so
	return nil
}

func (s *workerSys) unregister(so *sock) {
	// ENOENT: never registered (a failed add); nothing to undo.
	_ = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, so.fd, nil)
	if so.fd < len(s.socks) && s.socks[so.fd] == so {
		s.socks[so.fd] = nil
	}
}

func (s *workerSys) close() {
	unix.Close(s.evfd)
	if s.file != nil {
		s.file.Close() // closes epfd
	}
}

// run is the worker goroutine: it waits in the netpoller for the epoll
// fd, and poll does the rest, until the worker is stopped.
func (w *worker) run() {
	defer close(w.done)
	defer w.shutdown()
	s := &w.sys
	s.poll = w.poll
	w.tick()
	s.hkDue = w.now + int64(housekeepEvery)
	for !s.stopped {
		// The deadline wakes an idle worker for housekeeping.
		_ = s.file.SetReadDeadline(w.wall.Add(time.Duration(s.hkDue - w.now)))
		err := s.rc.Read(s.poll)
		w.tick()
		switch {
		case s.stopped:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if w.now >= s.hkDue {
				w.housekeep()
				s.hkDue = w.now + int64(housekeepEvery)
			}
		case err != nil:
			w.g.log.Error("waiting on epoll failed; worker stopping", "worker", w.id, "err", err)
			return
		}
	}
}

// poll serves everything ready, and keeps serving while packets keep
// coming. It reports true when the worker must stop, false to wait in the
// netpoller for the next packet or command.
//
// Coalescing: at 50 packets per second per call, packets of different
// calls arrive a few hundred microseconds apart and a worker that goes
// back to sleep after each one pays a wake-up (two context switches) per
// packet, which costs more than the packet itself. When packets arrive
// within the coalesce window of each other, the worker instead sleeps for
// the window and then takes everything that arrived meanwhile, a batch
// per socket, at the price of at most one window of added latency. A
// lone packet (a quiet worker) is served at once. A round that filled a
// batch polls again without sleeping: the worker is saturated and every
// system call already carries many packets.
func (w *worker) poll(uintptr) bool {
	s := &w.sys
	for {
		n := epollNow(s.epfd, s.events)
		if n <= 0 {
			return false
		}
		prev := s.lastPkts
		w.tick()
		w.stats.wakeups.Add(1)
		s.full = false
		pkts := w.dispatch(n)
		if s.stopped {
			return true
		}
		if w.now >= s.hkDue {
			w.housekeep()
			s.hkDue = w.now + int64(housekeepEvery)
		}
		c := int64(w.cfg.Coalesce.D())
		if pkts == 0 || c == 0 {
			continue
		}
		s.lastPkts = w.now
		// Coalesce while rounds keep collecting at least two packets;
		// start when packets come less than half a window apart.
		dense := pkts >= 2 && s.coalescing || w.now-prev < c/2
		s.coalescing = dense && !s.full
		if s.coalescing {
			sleepRaw(c)
		}
	}
}

// dispatch serves the n ready descriptors of the last epoll_wait and runs
// queued commands; it returns the packets received.
func (w *worker) dispatch(n int) int {
	s := &w.sys
	cmds, pkts := false, 0
	for i := 0; i < n; i++ {
		fd := int(s.events[i].Fd)
		if fd == s.evfd {
			cmds = true
			continue
		}
		if fd < len(s.socks) {
			if so := s.socks[fd]; so != nil {
				pkts += w.serve(so)
			}
		}
	}
	if cmds {
		var b [8]byte
		_, _ = unix.Read(s.evfd, b[:])
		if !w.runCommands() {
			s.stopped = true
		}
	}
	return pkts
}

// epollNow returns the ready events without blocking. epoll_pwait with a
// zero timeout never sleeps, so it is issued as a raw system call, without
// the scheduler's bookkeeping for calls that may block.
func epollNow(epfd int, events []unix.EpollEvent) int {
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(r)
}

// sleepRaw sleeps d (under a millisecond) without giving up the thread's
// P: Go's timers are millisecond-coarse, and a blocking system call would
// let the scheduler hand the P to another thread only to take it back. A
// signal (goroutine preemption) may cut the sleep short, which is harmless.
func sleepRaw(d int64) {
	ts := unix.NsecToTimespec(d)
	_, _, _ = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// maxRounds bounds the batches read from one socket per wake-up, so that
// one busy socket cannot starve the others (epoll is level-triggered: a
// socket with data left is reported again).
const maxRounds = 4

// serve drains up to maxRounds batches from so, handles every packet and
// sends the results with one sendmmsg per destination socket.
func (w *worker) serve(so *sock) int {
	s := &w.sys
	batch := min(w.cfg.Batch, len(s.bufs))
	total := 0
	for round := 0; round < maxRounds; round++ {
		k, err := s.rx.Recv(so.fd, s.rbufs[:batch])
		if err != nil || k == 0 {
			// EAGAIN: drained. Other errors (ECONNREFUSED from an ICMP
			// error queued on the socket) are consumed by the call.
			return total
		}
		total += k
		w.stats.batches.Add(1)
		for i := 0; i < k; i++ {
			n := s.rx.Size(i)
			src := s.rx.Addr(i)
			out, o, dst, m := w.handle(so, src, s.bufs[i], n)
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
// leave from the same socket.
func (w *worker) flush() {
	s := &w.sys
	for i := 0; i < len(s.out); {
		j := i + 1
		for j < len(s.out) && s.out[j].s == s.out[i].s {
			j++
		}
		w.sendRun(s.out[i:j])
		i = j
	}
	clear(s.out)
	s.out = s.out[:0]
}

func (w *worker) sendRun(run []pending) {
	s := &w.sys
	so := run[0].s
	tx := s.tx
	for len(run) > 0 {
		tx.Reset(so.v6, !s.gsoOff)
		used := 0
		for ; used < len(run); used++ {
			p := &run[used]
			if err := tx.Add(s.bufs[p.buf][:p.n], p.dst); errors.Is(err, udpbatch.ErrBatchFull) {
				break
			} else if err != nil {
				// An IPv6 destination on an IPv4 socket.
				w.sendFailed(so, p.leg, 1)
			}
		}
		// A message the kernel refuses (EPERM from a firewall rule,
		// ENETUNREACH) is skipped; when the send buffer is full (EAGAIN)
		// the rest is dropped rather than stall every other session of
		// the worker: UDP media is better lost than late.
		err := tx.SendAll(so.fd, func(first, n int) {
			for _, p := range run[first : first+n] {
				w.sendFailed(so, p.leg, 1)
			}
		})
		if err != nil {
			// The kernel or the route's device refused a UDP GSO message
			// (SendAll sent its packets one per datagram): stop using it.
			s.gsoOff = true
			w.stats.gsoOff.Store(true)
			w.g.log.Warn("UDP GSO refused; sending one datagram per packet", "worker", w.id, "err", err)
		}
		if msgs, segs := tx.TakeGSOCounts(); msgs > 0 {
			w.stats.gsoSends.Add(msgs)
			w.stats.gsoSegments.Add(segs)
		}
		run = run[used:]
	}
	tx.Reset(so.v6, false) // keep no packet buffer reachable
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
	for _, so := range w.sys.socks {
		if so == nil || so.leg != id {
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
