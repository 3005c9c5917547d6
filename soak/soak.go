// Package soak runs mediaedge for a long time under a steady load and
// checks that it stays flat: the real daemon (`mediaedge run` with a
// generated configuration) with thousands of idle TURN allocations and
// gateway sessions, paced media on a sample of each with every packet
// accounted for, allocation and session churn, a reload every minute, and
// its resident memory, Go heap, goroutines and file descriptors sampled
// throughout. It talks to the daemon over the wire only (TURN, the control
// API, /metrics, /proc), like any client. `make soak` runs it.
package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediaedge/mediaedge/internal/control"
)

// Options describe a soak run.
type Options struct {
	// Bin is the mediaedge binary; Out the directory for the report.
	Bin, Out string
	// Duration is the measured run after set-up.
	Duration time.Duration
	// Allocations and Sessions are the idle TURN allocations and gateway
	// sessions held throughout.
	Allocations, Sessions int
	// MediaAllocations and MediaSessions carry paced media, PPS packets a
	// second each way.
	MediaAllocations, MediaSessions, PPS int
	// Churn is the share of idle allocations and sessions replaced every
	// ChurnEvery.
	Churn      float64
	ChurnEvery time.Duration
	// ReloadEvery sends SIGHUP; SampleEvery reads the daemon's figures.
	ReloadEvery, SampleEvery time.Duration
	// WarmUp is left out of the flatness check; 0: a fifth of Duration,
	// at least a minute.
	WarmUp time.Duration
	// Tolerance is how far the figures may drift after warm-up (0.05).
	Tolerance float64
	// Uplink, when set, is an interface of a network namespace the soak
	// owns (see cmd/soak): the policy component watches it as its uplink,
	// and the soak takes it down for FlapDown every FlapEvery (0: twice
	// in the run, at most every 5 minutes).
	Uplink    string
	FlapEvery time.Duration
	FlapDown  time.Duration
	// FlapNote says why there is no flap when Uplink is empty.
	FlapNote string
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

// DefaultOptions are the figures of issue 12: 10,000 of each, 20 sampled at
// 50 packets/s, 1 % churn every 10 s, a reload a minute, a sample every
// 10 s.
func DefaultOptions() Options {
	return Options{
		Duration: 30 * time.Minute, Allocations: 10000, Sessions: 10000,
		MediaAllocations: 20, MediaSessions: 20, PPS: 50,
		Churn: 0.01, ChurnEvery: 10 * time.Second, ReloadEvery: time.Minute, SampleEvery: 10 * time.Second,
		Tolerance: 0.05, FlapDown: 5 * time.Second,
	}
}

// runState is what the run's goroutines share.
type runState struct {
	o      Options
	d      *daemon
	ctl    *control.Client
	turn   *net.UDPAddr
	allocs atomic.Int64
	sess   atomic.Int64

	mu        sync.Mutex // guards the following
	idle      []*idleAlloc
	refreshAt int
	ids       []string
	nextID    int
	churnErrs []string
}

func (r *runState) logf(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
}

func (r *runState) noteErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.churnErrs) < 20 {
		r.churnErrs = append(r.churnErrs, err.Error())
	}
}

// parallel runs f(i) for i in [0,n) on 8 goroutines and returns the first
// error.
func parallel(n int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

// Run performs the soak and writes its report into o.Out. The error is
// about the run itself (the daemon did not start); a run that completed
// returns its Result, which says whether it passed.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.WarmUp == 0 {
		o.WarmUp = max(time.Minute, o.Duration/5)
	}
	if o.FlapEvery == 0 {
		o.FlapEvery = min(5*time.Minute, o.Duration/3)
	}
	// The configuration names files in Out by absolute path.
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}
	o.Out = out
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	d, err := startDaemon(o.Bin, o.Out, o)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = d.stop()
		}
	}()
	r := &runState{o: o, d: d, ctl: control.NewClient(d.socket, "")}
	defer r.ctl.Close()
	if r.turn, err = net.ResolveUDPAddr("udp4", d.turnAddr); err != nil {
		return nil, err
	}
	res := &Result{Options: o, Log: d.logPath}

	// Set-up: the idle population, then the sampled calls.
	t0 := time.Now()
	r.idle = make([]*idleAlloc, o.Allocations)
	if err := parallel(o.Allocations, func(i int) error {
		a, err := allocateIdle(d, r.turn)
		if err != nil {
			return fmt.Errorf("allocation %d: %w", i, err)
		}
		r.idle[i] = a
		r.allocs.Add(1)
		return nil
	}); err != nil {
		return nil, err
	}
	r.logf("%d allocations in %v", o.Allocations, time.Since(t0).Round(time.Millisecond))
	t1 := time.Now()
	discard := netipLoopback(9)
	r.ids = make([]string, o.Sessions)
	if err := parallel(o.Sessions, func(i int) error {
		id := fmt.Sprintf("soak-%d", i)
		if _, _, _, err := createSession(ctx, r.ctl, id, discard, discard); err != nil {
			return err
		}
		r.ids[i] = id
		r.sess.Add(1)
		return nil
	}); err != nil {
		return nil, err
	}
	r.nextID = o.Sessions
	r.logf("%d sessions in %v", o.Sessions, time.Since(t1).Round(time.Millisecond))
	res.SetupSeconds = time.Since(t0).Seconds()

	peer, err := newEchoPeer()
	if err != nil {
		return nil, err
	}
	defer peer.close()
	var media []*mediaAlloc
	defer func() {
		for _, m := range media {
			m.close()
		}
	}()
	var backMu sync.Mutex
	var recvWG sync.WaitGroup
	for i := range o.MediaAllocations {
		m, err := newMediaAlloc(d, uint32(i))
		if err != nil {
			return nil, fmt.Errorf("sampled allocation %d: %w", i, err)
		}
		media = append(media, m)
		recvWG.Add(1)
		go func() {
			defer recvWG.Done()
			m.receive(&backMu)
		}()
	}
	var calls []*mediaSession
	defer func() {
		for _, ms := range calls {
			ms.close()
		}
	}()
	for i := range o.MediaSessions {
		ms, err := newMediaSession(ctx, r.ctl, fmt.Sprintf("media-%d", i), uint32(0x50a0000+2*i))
		if err != nil {
			return nil, err
		}
		calls = append(calls, ms)
	}
	r.logf("media on %d allocations and %d sessions at %d packets/s each way", len(media), len(calls), o.PPS)

	// The measured run.
	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	start := time.Now()
	rcvbuf0 := udpRcvbufErrors()
	var wg sync.WaitGroup
	if o.Uplink != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Flaps = r.flap(runCtx)
		}()
	}
	wg.Add(2)
	var sendErr atomic.Pointer[error]
	go func() {
		defer wg.Done()
		if err := r.pace(runCtx, peer.conn.LocalAddr(), media, calls); err != nil {
			sendErr.Store(&err)
		}
	}()
	go func() {
		defer wg.Done()
		r.churn(runCtx)
	}()
	sampleT := time.NewTicker(o.SampleEvery)
	reloadT := time.NewTicker(o.ReloadEvery)
	defer sampleT.Stop()
	defer reloadT.Stop()
	take := func() {
		s, err := d.sample(start)
		if err != nil {
			r.noteErr(err)
			return
		}
		s.Allocations, s.Sessions = int(r.allocs.Load())+len(media), int(r.sess.Load())+len(calls)
		res.Samples = append(res.Samples, s)
		r.logf("t=%4.0fs rss=%dKiB heap=%.1fMiB goal=%.1fMiB goroutines=%.0f fds=%d", s.T, s.RSSKiB, s.HeapBytes/(1<<20), s.HeapGoal/(1<<20), s.Goroutines, s.FDs)
	}
	take()
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-sampleT.C:
			take()
		case <-reloadT.C:
			if err := d.reload(); err != nil {
				r.noteErr(err)
			} else {
				res.Reloads++
			}
		}
	}
	take()
	wg.Wait()
	// Quiet: what is still in flight arrives, then the counts are final.
	time.Sleep(2 * time.Second)
	if p := sendErr.Load(); p != nil {
		r.noteErr(*p)
	}
	for _, m := range media {
		backMu.Lock()
		back := m.back.count()
		backMu.Unlock()
		res.Streams = append(res.Streams, StreamResult{Name: fmt.Sprintf("allocation %d to peer", m.idx), Sent: int(m.sent), Received: peer.received(m.idx)},
			StreamResult{Name: fmt.Sprintf("allocation %d to client", m.idx), Sent: peer.received(m.idx), Received: back})
	}
	for _, ms := range calls {
		for _, st := range ms.streams {
			got, bad := st.result()
			res.Streams = append(res.Streams, StreamResult{Name: ms.id + " " + st.name, Sent: int(st.sent), Received: got, Bad: bad})
		}
	}

	res.Counters = d.counters()
	if v := udpRcvbufErrors(); v >= 0 && rcvbuf0 >= 0 {
		res.RcvbufErrors = v - rcvbuf0
	}

	// Stop: SIGTERM within the drain time, then read the log.
	t2 := time.Now()
	stopped = true
	if err := d.stop(); err != nil {
		var ee interface{ ExitCode() int }
		if !errors.As(err, &ee) {
			r.noteErr(err)
		} else {
			r.noteErr(fmt.Errorf("daemon exited with status %d", ee.ExitCode()))
		}
	}
	res.StopSeconds = time.Since(t2).Seconds()
	if res.Errors, err = d.logLines("level=ERROR"); err != nil {
		return nil, err
	}
	applied, err := d.logLines(`msg="reload applied"`)
	if err != nil {
		return nil, err
	}
	res.ReloadsApplied = len(applied)
	r.mu.Lock()
	res.RunErrors = r.churnErrs
	r.mu.Unlock()
	res.Churned = int(churned.Load())
	res.evaluate()
	if err := res.write(o.Out); err != nil {
		return res, err
	}
	return res, nil
}

// pace sends one packet per sampled stream every 1/PPS seconds until ctx
// ends.
func (r *runState) pace(ctx context.Context, peer net.Addr, media []*mediaAlloc, calls []*mediaSession) error {
	t := time.NewTicker(time.Second / time.Duration(r.o.PPS))
	defer t.Stop()
	payload := make([]byte, 160)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, m := range media {
			if err := m.send(peer, m.sent, payload); err != nil {
				return fmt.Errorf("sending on allocation %d: %w", m.idx, err)
			}
			m.sent++
		}
		for _, ms := range calls {
			for _, st := range ms.streams {
				if err := st.sendNext(payload); err != nil {
					return fmt.Errorf("sending on %s: %w", ms.id, err)
				}
			}
		}
	}
}

var churned atomic.Int64

// churn replaces a share of the idle allocations and sessions every
// ChurnEvery, and refreshes the oldest allocations so that none expires.
func (r *runState) churn(ctx context.Context) {
	t := time.NewTicker(r.o.ChurnEvery)
	defer t.Stop()
	nA := max(1, int(float64(r.o.Allocations)*r.o.Churn))
	nS := max(1, int(float64(r.o.Sessions)*r.o.Churn))
	// Every allocation is refreshed within 20 minutes (they last an hour).
	nR := max(1, r.o.Allocations*int(r.o.ChurnEvery/time.Second)/1200)
	discard := netipLoopback(9)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		old := append([]*idleAlloc(nil), r.idle[:nA]...)
		r.idle = r.idle[nA:]
		oldIDs := append([]string(nil), r.ids[:nS]...)
		r.ids = r.ids[nS:]
		r.mu.Unlock()
		for _, a := range old {
			if err := a.release(r.d, r.turn); err != nil {
				r.noteErr(fmt.Errorf("releasing an allocation: %w", err))
			}
			r.allocs.Add(-1)
			a2, err := allocateIdle(r.d, r.turn)
			if err != nil {
				if ctx.Err() == nil {
					r.noteErr(fmt.Errorf("allocating: %w", err))
				}
				continue
			}
			r.allocs.Add(1)
			r.mu.Lock()
			r.idle = append(r.idle, a2)
			r.mu.Unlock()
			churned.Add(1)
		}
		for _, id := range oldIDs {
			if err := deleteSession(ctx, r.ctl, id); err != nil && ctx.Err() == nil {
				r.noteErr(err)
			}
			r.sess.Add(-1)
			r.mu.Lock()
			nid := fmt.Sprintf("soak-%d", r.nextID)
			r.nextID++
			r.mu.Unlock()
			if _, _, _, err := createSession(ctx, r.ctl, nid, discard, discard); err != nil {
				if ctx.Err() == nil {
					r.noteErr(err)
				}
				continue
			}
			r.sess.Add(1)
			r.mu.Lock()
			r.ids = append(r.ids, nid)
			r.mu.Unlock()
			churned.Add(1)
		}
		// Refresh the allocations next in line (the oldest were churned).
		r.mu.Lock()
		var batch []*idleAlloc
		for range nR {
			if len(r.idle) == 0 {
				break
			}
			r.refreshAt %= len(r.idle)
			batch = append(batch, r.idle[r.refreshAt])
			r.refreshAt++
		}
		r.mu.Unlock()
		for _, a := range batch {
			if err := a.refresh(r.d, r.turn); err != nil && ctx.Err() == nil {
				r.noteErr(fmt.Errorf("refreshing an allocation: %w", err))
			}
		}
	}
}
