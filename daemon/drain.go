package daemon

import (
	"net/http"
	"time"

	"github.com/mediaedge/mediaedge/internal/control"
)

// DefaultDrainDeadline is how long a drain waits for live calls when the
// request names no deadline.
const DefaultDrainDeadline = 10 * time.Minute

// drainPoll is how often a drain counts the live allocations and sessions.
const drainPoll = 250 * time.Millisecond

// DrainRequest is the body of POST /v1/drain. Deadline is a Go duration
// ("10m"); empty means DefaultDrainDeadline.
type DrainRequest struct {
	Deadline string `json:"deadline,omitempty"`
}

// DrainStatus is the drain part of GET /v1/status and the answer to POST
// /v1/drain.
type DrainStatus struct {
	Since       time.Time `json:"since"`
	Deadline    time.Time `json:"deadline"`
	Allocations int       `json:"allocations"`
	Sessions    int       `json:"sessions"`
	// Done is set once the last call ended or the deadline passed; the
	// daemon then stops.
	Done   bool   `json:"done,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Drain stops the daemon from taking new work and lets the live calls
// end: /readyz answers 503 "draining" so that a load balancer sends new
// clients elsewhere, the relay answers Allocate with 486 and the gateway
// refuses new sessions with 503, while live allocations and sessions keep
// relaying. Once none is left, or after deadline, the channel of Drained
// is closed and the caller (cmd/mediaedge's signal loop) stops the daemon.
//
// A second Drain can only bring the deadline forward. It is safe for
// concurrent use.
func (d *Daemon) Drain(deadline time.Duration) DrainStatus {
	now := time.Now()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return DrainStatus{Since: now, Deadline: now, Done: true, Reason: "stopped"}
	}
	first := d.drainSince.IsZero()
	if first {
		d.drainSince = now
		d.drainDeadline = now.Add(deadline)
	} else if dl := now.Add(deadline); dl.Before(d.drainDeadline) {
		d.drainDeadline = dl
	}
	dl := d.drainDeadline
	running := map[string]bool{}
	for _, u := range d.running {
		running[u.name] = true
	}
	d.mu.Unlock()
	if first {
		d.metrics.SetReady(false, "draining")
		// Components that do not run take no calls: nothing to refuse.
		if running["relay"] {
			d.relay.Drain()
		}
		if running["gateway"] {
			d.gw.Drain()
		}
		d.log.Info("draining: refusing new allocations and sessions; stopping when the last call ends",
			"deadline", dl.Format(time.RFC3339), "allocations", d.relay.Active(), "sessions", d.gw.Active())
		d.drainWG.Add(1)
		go d.watchDrain()
		if d.onDrain != nil {
			d.onDrain(d.drainStatus())
		}
	} else {
		select {
		case d.drainKick <- struct{}{}:
		default:
		}
	}
	return d.drainStatus()
}

// Drained returns a channel closed when a drain has finished: every
// allocation and session ended, or the deadline passed.
func (d *Daemon) Drained() <-chan struct{} { return d.drained }

// drainStatus returns the drain's state; the zero Since means no drain.
func (d *Daemon) drainStatus() DrainStatus {
	d.mu.Lock()
	st := DrainStatus{Since: d.drainSince, Deadline: d.drainDeadline, Reason: d.drainReason}
	d.mu.Unlock()
	st.Done = st.Reason != ""
	st.Allocations, st.Sessions = d.relay.Active(), d.gw.Active()
	return st
}

// watchDrain is the drain's goroutine, owned by the Daemon: it ends when
// the drain is done or Close stops it.
func (d *Daemon) watchDrain() {
	defer d.drainWG.Done()
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		a, s := d.relay.Active(), d.gw.Active()
		d.mu.Lock()
		dl := d.drainDeadline
		d.mu.Unlock()
		reason := ""
		switch {
		case a == 0 && s == 0:
			reason = "no_calls_left"
		case !time.Now().Before(dl):
			reason = "deadline"
		}
		if reason != "" {
			d.mu.Lock()
			d.drainReason = reason
			d.mu.Unlock()
			d.log.Info("drain complete", "reason", reason, "allocations", a, "sessions", s)
			close(d.drained)
			return
		}
		select {
		case <-d.stopDrain:
			return
		case <-d.drainKick:
		case <-t.C:
		}
	}
}

func (d *Daemon) serveDrain(w http.ResponseWriter, r *http.Request) {
	var req DrainRequest
	if r.ContentLength != 0 {
		if !control.DecodeJSON(w, r, &req) {
			return
		}
	}
	dl := DefaultDrainDeadline
	if req.Deadline != "" {
		v, err := time.ParseDuration(req.Deadline)
		if err != nil || v < 0 {
			control.WriteError(w, http.StatusBadRequest, control.CodeBadRequest, "deadline: want a duration such as 10m")
			return
		}
		dl = v
	}
	control.WriteJSON(w, http.StatusAccepted, d.Drain(dl))
}
