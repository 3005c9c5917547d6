package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// workerSys is the Linux side of a worker: an epoll set over raw
// non-blocking UDP sockets and an eventfd that wakes it for commands.
//
// The sockets are raw file descriptors, not *net.UDPConn: a Go socket
// sits in the runtime's own epoll set and every datagram would wake the
// netpoller and a goroutine, which at 50 packets per second per stream
// costs more than the cryptography. Here one thread sleeps in
// epoll_wait for all of a worker's sockets and drains each ready socket
// with recvmmsg.
type workerSys struct {
	epfd, evfd int
	// socks maps a file descriptor to its socket (owned by the worker
	// goroutine).
	socks  []*sock
	events []unix.EpollEvent
	rx, tx mmsgBatch
	bufs   [][]byte
	// pending sends of the current batch
	out    []pending
	txLegs []*leg
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
	s.epfd, s.evfd = epfd, evfd
	s.events = make([]unix.EpollEvent, 256)
	s.rx, s.tx = newMmsgBatch(batch), newMmsgBatch(batch)
	s.bufs = make([][]byte, batch)
	for i := range s.bufs {
		s.bufs[i] = make([]byte, bufSize)
	}
	s.out = make([]pending, 0, batch)
	s.txLegs = make([]*leg, batch)
	return nil
}

// wake interrupts epoll_wait. Safe for concurrent use.
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
	unix.Close(s.epfd)
}

// run is the worker goroutine: wait, serve ready sockets, run commands,
// housekeep; until stopped.
func (w *worker) run() {
	defer close(w.done)
	defer w.shutdown()
	s := &w.sys
	w.tick()
	nextHK := w.now + int64(housekeepEvery)
	for {
		timeout := int((nextHK - w.now + int64(time.Millisecond) - 1) / int64(time.Millisecond))
		timeout = max(0, min(timeout, int(housekeepEvery/time.Millisecond)))
		n, err := unix.EpollWait(s.epfd, s.events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			w.g.log.Error("epoll_wait failed; worker stopping", "worker", w.id, "err", err)
			return
		}
		w.tick()
		w.stats.wakeups.Add(1)
		cmds := false
		for i := 0; i < n; i++ {
			fd := int(s.events[i].Fd)
			if fd == s.evfd {
				cmds = true
				continue
			}
			if fd < len(s.socks) {
				if so := s.socks[fd]; so != nil {
					w.serve(so)
				}
			}
		}
		if cmds {
			var b [8]byte
			_, _ = unix.Read(s.evfd, b[:])
			if !w.runCommands() {
				return
			}
		}
		if w.now >= nextHK {
			w.housekeep()
			nextHK = w.now + int64(housekeepEvery)
		}
	}
}

// maxRounds bounds the batches read from one socket per wake-up, so that
// one busy socket cannot starve the others (epoll is level-triggered: a
// socket with data left is reported again).
const maxRounds = 4

// serve drains up to maxRounds batches from so, handles every packet and
// sends the results with one sendmmsg per destination socket.
func (w *worker) serve(so *sock) {
	s := &w.sys
	batch := min(w.cfg.Batch, len(s.bufs))
	for round := 0; round < maxRounds; round++ {
		k, err := s.rx.recv(so.fd, s.bufs[:batch])
		if err != nil || k == 0 {
			// EAGAIN: drained. Other errors (ECONNREFUSED from an ICMP
			// error queued on the socket) are consumed by the call.
			return
		}
		w.stats.batches.Add(1)
		for i := 0; i < k; i++ {
			n := s.rx.length(i)
			src := s.rx.addr(i)
			out, o, dst, m := w.handle(so, src, s.bufs[i], n)
			if out != nil {
				s.out = append(s.out, pending{s: out, leg: o, dst: dst, buf: i, n: m})
			}
		}
		w.flush()
		if k < batch {
			return
		}
	}
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
	for len(run) > 0 {
		m := min(len(run), len(s.tx.hdrs))
		// txLegs[j] is the leg of slot j, for per-session error counts.
		n := 0
		for i := 0; i < m; i++ {
			p := &run[i]
			if !s.tx.set(n, s.bufs[p.buf][:p.n], p.dst, so.v6) {
				w.sendFailed(so, p.leg, 1)
				continue
			}
			s.txLegs[n] = p.leg
			n++
		}
		for from := 0; from < n; {
			sent, err := s.tx.send(so.fd, from, n)
			from += sent
			if from >= n {
				break
			}
			if errors.Is(err, unix.EAGAIN) {
				// Send buffer full: drop the rest of the run rather than
				// stall every other session of the worker. UDP media is
				// better lost than late.
				for ; from < n; from++ {
					w.sendFailed(so, s.txLegs[from], 1)
				}
				break
			}
			// The kernel refused this one datagram (EPERM from a
			// firewall rule, ENETUNREACH): skip it, send the rest.
			w.sendFailed(so, s.txLegs[from], 1)
			from++
		}
		s.tx.release(n)
		clear(s.txLegs[:n])
		run = run[m:]
	}
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
		if err := opts.Control("udp", so.local.String(), rawFD(so.fd)); err != nil {
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
