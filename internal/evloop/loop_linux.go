package evloop

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Handler is a data path's packet logic, called by its Loop's goroutine
// only. In every round the Loop calls Round, then Ready for each ready
// descriptor, Woken if Wake was called, the due timers, and Flush.
type Handler interface {
	// Round starts a round at now on the Loop's clock.
	Round(now int64)
	// Ready serves the descriptor added under tag: it reads what the
	// socket holds, at most a few batches so that one busy socket cannot
	// starve the others (epoll is level-triggered: a socket with data
	// left is reported again). It returns the datagrams it read and
	// whether a read filled its batch.
	Ready(tag int32) (n int, full bool)
	// Woken runs in the first round after Wake was called, however many
	// times it was.
	Woken()
	// Flush ends the round: it sends what the round produced.
	Flush()
}

// Config is what New needs.
type Config struct {
	// Name names the loop in errors and in the runtime's file table, e.g.
	// "relay" or "gateway".
	Name string
	// Clock returns monotonic nanoseconds: the time Round and timer
	// functions get, and the clock of Schedule's deadlines. Nil: the time
	// since New.
	Clock func() int64
	// MinBatch is how many datagrams the measured arrival rate must bring
	// in one coalesce window before the loop sleeps for windows (at least
	// 1; see coalescer): the data path's price in latency for batching.
	MinBatch int
	// TimerBudget bounds the timers fired per round (at least 1; 0 means
	// DefaultTimerBudget), so that a burst of deadlines cannot hold up the
	// sockets: the rest fire in the next rounds.
	TimerBudget int
}

// DefaultTimerBudget is the timers a round fires when Config.TimerBudget
// is 0.
const DefaultTimerBudget = 64

// epollEvents is how many ready descriptors one epoll_pwait returns; more
// are reported by the next one (level-triggered).
const epollEvents = 256

// wakeTag is the epoll tag of the loop's eventfd: no data path uses it.
const wakeTag = math.MinInt32

// Loop is one data-path event loop: an epoll set in Go's netpoller, an
// eventfd for Wake, a deadline heap of timers and the coalescing decision.
// New creates it, Run serves it on the caller's goroutine (its owner) until
// Stop (from that goroutine) or Close (from any), and Close releases it.
// Add, Remove, Wake, SetCoalesce and Close are safe for concurrent use;
// Schedule, Cancel, Stop and Now belong to the loop's goroutine.
type Loop struct {
	// set in New, never changed
	name  string
	clock func() int64
	epfd  int
	evfd  int
	file  *os.File // holds epfd in the runtime's netpoller
	rc    syscall.RawConn
	// pollFn is l.poll, built once so that a wait allocates no closure
	pollFn func(uintptr) bool
	budget int

	coalesce atomic.Int64 // window in ns; 0: never sleep
	closing  atomic.Bool
	sleeps   atomic.Uint64 // coalesce windows slept

	// wmu guards closed against Wake: the eventfd is written only while
	// open, never a descriptor number the kernel has since reused.
	wmu    sync.RWMutex
	closed bool

	// owned by the loop's goroutine
	h       Handler
	events  []unix.EpollEvent
	timers  timers
	co      coalescer
	now     int64
	armed   int64 // the deadline set on file; armedOK false: none
	armedOK bool
	stopped bool
	err     error
}

// New creates a Loop with no descriptor but its eventfd.
func New(cfg Config) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("evloop: %s: epoll_create1: %w", cfg.Name, err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("evloop: %s: eventfd: %w", cfg.Name, err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeTag}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("evloop: %s: adding the eventfd: %w", cfg.Name, err)
	}
	// A non-blocking epoll descriptor is pollable: os.NewFile registers it
	// with the runtime's netpoller (an epoll set inside an epoll set),
	// which reports it readable when any of its descriptors is.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("evloop: %s: epoll set non-blocking: %w", cfg.Name, err)
	}
	f := os.NewFile(uintptr(epfd), cfg.Name+"-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Close(evfd)
		return nil, fmt.Errorf("evloop: %s: epoll raw conn: %w", cfg.Name, err)
	}
	l := &Loop{
		name:   cfg.Name,
		clock:  cfg.Clock,
		epfd:   epfd,
		evfd:   evfd,
		file:   f,
		rc:     rc,
		budget: cfg.TimerBudget,
		events: make([]unix.EpollEvent, epollEvents),
	}
	if l.clock == nil {
		t0 := time.Now()
		l.clock = func() int64 { return int64(time.Since(t0)) }
	}
	if l.budget <= 0 {
		l.budget = DefaultTimerBudget
	}
	l.co.minBatch = int64(max(cfg.MinBatch, 1))
	l.pollFn = l.poll
	return l, nil
}

// Add puts socket fd in the loop's epoll set: when it is readable, Ready
// gets tag (any value but math.MinInt32). Safe for concurrent use.
func (l *Loop) Add(fd int, tag int32) error {
	if tag == wakeTag {
		return fmt.Errorf("evloop: %s: tag %d is reserved", l.name, tag)
	}
	return l.ctl(unix.EPOLL_CTL_ADD, fd, tag)
}

// Remove takes fd out of the epoll set; call it before closing fd. A
// descriptor that is not in the set, or a closed Loop, is not an error.
// Safe for concurrent use.
func (l *Loop) Remove(fd int) {
	// ENOENT: never added (a failed Add); nothing to undo.
	_ = l.ctl(unix.EPOLL_CTL_DEL, fd, 0)
}

// ctl runs epoll_ctl while holding a reference on the epoll descriptor,
// so that it never reaches a descriptor number the kernel has reused after
// Close.
func (l *Loop) ctl(op, fd int, tag int32) error {
	var err error
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tag}
	if cerr := l.rc.Control(func(epfd uintptr) {
		err = unix.EpollCtl(int(epfd), op, fd, &ev)
	}); cerr != nil {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("evloop: %s: epoll_ctl: %w", l.name, err)
	}
	return nil
}

// Wake makes the loop call Woken in its next round. Safe for concurrent
// use, also after Close (it then does nothing).
func (l *Loop) Wake() {
	l.wmu.RLock()
	defer l.wmu.RUnlock()
	if l.closed {
		return
	}
	one := [8]byte{1}
	// EAGAIN: the counter is already non-zero, a wake-up is pending.
	_, _ = unix.Write(l.evfd, one[:])
}

// SetCoalesce sets the coalesce window (0: never sleep; at most a few
// milliseconds). Safe for concurrent use.
func (l *Loop) SetCoalesce(d time.Duration) { l.coalesce.Store(int64(max(d, 0))) }

// Sleeps returns how many coalesce windows the loop has slept. Safe for
// concurrent use.
func (l *Loop) Sleeps() uint64 { return l.sleeps.Load() }

// Now returns the time of the current round on the Loop's clock; loop
// goroutine only.
func (l *Loop) Now() int64 { return l.now }

// Schedule sets t to fire at when (the Loop's clock), scheduling it or
// moving a pending deadline. A deadline already past fires in the next
// round. Loop goroutine only; no allocation once the heap has grown to the
// most timers pending at once.
func (l *Loop) Schedule(t *Timer, when int64) { l.timers.schedule(t, when) }

// Cancel unschedules t and reports whether it was pending. Loop goroutine
// only.
func (l *Loop) Cancel(t *Timer) bool { return l.timers.cancel(t) }

// Stop ends Run after the current round; loop goroutine only.
func (l *Loop) Stop() { l.stopped = true }

// Run serves the loop with h on the calling goroutine until Stop or Close.
// It returns nil then, or the error that ended the wait in the netpoller.
func (l *Loop) Run(h Handler) error {
	l.h = h
	defer func() { l.h = nil }()
	for {
		l.arm()
		err := l.rc.Read(l.pollFn)
		switch {
		case l.stopped || l.closing.Load():
			return nil
		case l.err != nil:
			return l.err
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
			// poll asked for a new deadline, or the earliest timer is due.
		default:
			return fmt.Errorf("evloop: %s: waiting in the netpoller: %w", l.name, err)
		}
	}
}

// arm sets the netpoller deadline to the earliest timer's, unless it is
// already set there or is due (poll then fires it without waiting).
func (l *Loop) arm() {
	when, ok := l.timers.next()
	if ok && when <= l.clock() {
		ok = false
	}
	if ok == l.armedOK && (!ok || when == l.armed) {
		return
	}
	var d time.Time
	if ok {
		d = time.Now().Add(time.Duration(when - l.clock()))
	}
	// Fails only on a closed file, which the next Read reports.
	_ = l.file.SetReadDeadline(d)
	l.armed, l.armedOK = when, ok
}

// poll is the netpoller callback: it serves rounds while there is work
// and reports false to park until the epoll set is readable, true to end
// Read (stop, close, an error, or a timer now earlier than the deadline
// armed).
func (l *Loop) poll(uintptr) bool {
	for {
		if l.stopped || l.closing.Load() {
			return true
		}
		n, err := epollNow(l.epfd, l.events)
		if err != nil {
			l.err = fmt.Errorf("evloop: %s: epoll_pwait: %w", l.name, err)
			return true
		}
		now := l.clock()
		if n == 0 && !l.timers.due(now) {
			when, ok := l.timers.next()
			return ok && (!l.armedOK || when < l.armed)
		}
		pkts, full := l.round(n, now)
		if c := l.coalesce.Load(); l.co.after(now, pkts, full, c) {
			l.sleeps.Add(1)
			sleepRaw(c)
		}
	}
}

// round serves the n ready descriptors of the last epoll_pwait and the
// due timers; it returns the datagrams read and whether a read filled its
// batch.
func (l *Loop) round(n int, now int64) (pkts int, full bool) {
	l.now = now
	h := l.h
	h.Round(now)
	woken := false
	for i := 0; i < n; i++ {
		tag := l.events[i].Fd
		if tag == wakeTag {
			woken = true
			continue
		}
		k, f := h.Ready(tag)
		pkts += k
		full = full || f
	}
	if woken {
		var b [8]byte
		// Reading resets the counter; EAGAIN: another round took it.
		_, _ = unix.Read(l.evfd, b[:])
		h.Woken()
	}
	l.timers.run(now, l.budget)
	h.Flush()
	return pkts, full
}

// Close ends Run (it returns nil) and releases the epoll set and the
// eventfd; the sockets in the set stay open. Idempotent; safe for
// concurrent use.
func (l *Loop) Close() error {
	l.closing.Store(true)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.file.Close()
	unix.Close(l.evfd)
	return err
}
