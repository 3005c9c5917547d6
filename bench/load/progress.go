package load

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressDelay is how long a run must last before the progress line
// appears: short runs stay silent.
const progressDelay = 3 * time.Second

// progress prints a one-line status every second on w (a terminal) once
// progressDelay has passed, and clears it when stopped. line is called
// from Progress's own goroutine.
type progress struct {
	w    io.Writer
	line func() string
	done chan struct{}
	wg   sync.WaitGroup
}

// startProgress starts the progress line; w nil gives a no-op. The caller
// must call Stop.
func startProgress(w io.Writer, line func() string) *progress {
	p := &progress{w: w, line: line, done: make(chan struct{})}
	if w == nil {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		start := time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		shown := false
		for {
			select {
			case <-p.done:
				if shown {
					fmt.Fprint(p.w, "\r\033[K")
				}
				return
			case <-t.C:
				if time.Since(start) < progressDelay {
					continue
				}
				shown = true
				fmt.Fprintf(p.w, "\r\033[K%5.0fs  %s", time.Since(start).Seconds(), p.line())
			}
		}
	}()
	return p
}

// Stop ends the progress line and waits for its goroutine. Idempotent.
func (p *progress) Stop() {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
}

func (r *srtpRun) startProgress() func() {
	p := startProgress(r.opt.Progress, func() string {
		var sent, got, total int64
		for _, d := range r.dirs {
			got += d.received.Load()
			total += int64(d.total)
		}
		// sent is sender-owned; the line estimates it from the schedule
		// instead of reading it concurrently.
		sent = total
		return fmt.Sprintf("received %d of %d packets", got, sent)
	})
	return p.Stop
}
