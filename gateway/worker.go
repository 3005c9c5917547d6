package gateway

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// worker is one data-path event loop. It owns a set of sockets (the
// dedicated sockets of its sessions and its own shared sockets), the
// sessions on them, and every srtp.Context of those sessions: one
// goroutine reads, decrypts, re-encrypts and writes for all of them, so no
// lock is taken per packet. The control API reaches a worker's sessions
// only through do, which runs a function on the worker's goroutine
// between two batches.
//
// A worker is started by Gateway.Start and stopped by Gateway.Close, which
// waits for its goroutine to end.
type worker struct {
	// set in newWorker, never changed
	g     *Gateway
	id    int
	stats workerStats
	done  chan struct{}

	// mu guards the command queue.
	mu       sync.Mutex
	cmds     []func()
	stopping bool

	// owned by the worker goroutine
	cfg      *Config // the configuration in effect, refreshed per wake-up
	now      int64   // monotonic ns since g.epoch, per wake-up
	wall     time.Time
	sessions []*session
	shared   [2]sharedSocks
	hdr      rtp.Header
	primeHdr rtp.Header
	rhdr     rtcp.Header
	scratch  []byte
	trial    trialBudget
	sys      workerSys
}

// sharedSocks are a worker's shared sockets on one leg: RTP (and RTCP
// with rtcp-mux) and RTCP without rtcp-mux.
type sharedSocks struct {
	rtp, rtcp *sock
}

func newWorker(g *Gateway, id int) *worker {
	w := &worker{g: g, id: id, done: make(chan struct{}), scratch: make([]byte, bufSize)}
	w.cfg = g.cfg.Load()
	w.sys.clock = func() int64 { return int64(time.Since(g.epoch)) }
	w.sys.failFn = w.sendFailedAt
	w.sys.steerFailed = g.steerRefused
	// Room for the most CSRCs and header extensions a packet can carry,
	// so that parsing never allocates.
	w.hdr.CSRC = make([]uint32, 0, 15)
	w.hdr.Extensions = make([]rtp.Extension, 0, 16)
	w.primeHdr.CSRC = make([]uint32, 0, 15)
	return w
}

// tick refreshes the per-wake-up clock and configuration.
func (w *worker) tick() {
	w.wall = time.Now()
	w.now = int64(w.wall.Sub(w.g.epoch))
	w.cfg = w.g.cfg.Load()
}

// do runs fn on the worker's goroutine and waits until it has run or ctx
// ends. A function queued when the worker stops still runs, before the
// worker ends its sessions, so callers can rely on ordering: what they
// queue runs, in order.
func (w *worker) do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		return ErrClosed
	}
	w.cmds = append(w.cmds, func() { fn(); close(done) })
	w.mu.Unlock()
	w.sys.wake()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runCommands runs the queued functions. It reports false once the worker
// is stopping.
func (w *worker) runCommands() bool {
	w.mu.Lock()
	cmds := w.cmds
	w.cmds = nil
	stopping := w.stopping
	w.mu.Unlock()
	for i, fn := range cmds {
		fn()
		cmds[i] = nil
	}
	return !stopping
}

// stop asks the worker to end; Gateway.Close waits on done.
func (w *worker) stop() {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	w.sys.wake()
}

// addSession registers s with the worker: its dedicated sockets join the
// epoll set, its legs join the shared sockets' demux tables.
func (w *worker) addSession(s *session) error {
	if s.ended {
		return ErrNotFound
	}
	for id := range s.legs {
		l := &s.legs[id]
		for i, so := range []*sock{l.rtp, l.rtcp} {
			if so == nil || (i == 1 && so == l.rtp) {
				continue
			}
			if so.dm != nil {
				so.dm.add(l)
				continue
			}
			if err := w.sys.register(so); err != nil {
				w.removeLegs(s)
				for id := range s.legs {
					s.legs[id].wipe()
				}
				return err
			}
		}
	}
	w.trial.reconsider()
	s.idx = len(w.sessions)
	w.sessions = append(w.sessions, s)
	s.added = true
	s.lastAuth = w.now
	for id := range s.legs {
		s.legs[id].rekeyedAt = w.now
		w.dtlsAttach(&s.legs[id])
	}
	return nil
}

// removeLegs takes s's sockets out of the epoll set and the demux tables
// and closes its dedicated sockets.
func (w *worker) removeLegs(s *session) {
	for id := range s.legs {
		l := &s.legs[id]
		w.dtlsDetach(l)
		for i, so := range []*sock{l.rtp, l.rtcp} {
			if so == nil || (i == 1 && so == l.rtp) {
				continue
			}
			if so.dm != nil {
				so.dm.remove(l)
				continue
			}
			w.sys.unregister(so)
			w.g.closeSock(so)
		}
		l.rtp, l.rtcp = nil, nil
	}
}

// endSession ends s: sockets closed, keys wiped, the gateway told. It is
// idempotent.
func (w *worker) endSession(s *session, why string) {
	if s.ended {
		return
	}
	s.ended = true
	if s.added {
		last := len(w.sessions) - 1
		w.sessions[s.idx] = w.sessions[last]
		w.sessions[s.idx].idx = s.idx
		w.sessions[last] = nil
		w.sessions = w.sessions[:last]
		s.added = false
	}
	w.removeLegs(s)
	for id := range s.legs {
		s.legs[id].wipe()
	}
	w.g.sessionEnded(s, why)
}

// latched reports a remote address learned from an authenticated packet.
func (w *worker) latched(l *leg, src netip.AddrPort, rtcp bool) {
	w.stats.latched[l.id].Add(1)
	kind := "rtp"
	if rtcp && !l.mux {
		kind = "rtcp"
	}
	w.g.events.add(Event{Type: EventLatched, Session: l.s.id, Leg: l.id.String(), Remote: src.String(), Reason: kind}, nil)
}

// shutdown ends every session of the stopped worker and closes its
// shared sockets.
func (w *worker) shutdown() {
	// Commands queued before stopping still run (see do).
	w.runCommands()
	for len(w.sessions) > 0 {
		w.endSession(w.sessions[len(w.sessions)-1], EndShutdown)
	}
	for i := range w.shared {
		for _, so := range []*sock{w.shared[i].rtp, w.shared[i].rtcp} {
			if so != nil {
				w.sys.unregister(so)
				w.g.closeSock(so)
			}
		}
		w.shared[i] = sharedSocks{}
	}
	w.sys.close()
}
