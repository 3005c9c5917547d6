package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/control"
)

// TestDrainWithoutCallsEndsAtOnce: with nothing live a drain is done at
// once, and the status and /v1/drain say so.
func TestDrainWithoutCallsEndsAtOnce(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	c := control.NewClient(cfg.Control.SocketPath(), "")
	defer c.Close()
	var st DrainStatus
	if err := c.Do(ctx, "POST", "/v1/drain", DrainRequest{Deadline: "1h"}, &st); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(st.Deadline); d < 59*time.Minute || d > time.Hour {
		t.Errorf("deadline in %v, want 1h", d)
	}
	select {
	case <-d.Drained():
	case <-time.After(5 * time.Second):
		t.Fatal("drain with no calls did not finish")
	}
	rep := d.Status()
	if rep.Drain == nil || !rep.Drain.Done || rep.Drain.Reason != "no_calls_left" {
		t.Errorf("status drain = %+v", rep.Drain)
	}
	if err := c.Do(ctx, "POST", "/v1/drain", DrainRequest{Deadline: "soon"}, nil); err == nil {
		t.Error("a bad deadline was accepted")
	}
}

// TestDrainDeadlineOnlyMovesForward and Close stops the drain's goroutine
// (the package's TestMain checks for leaks).
func TestDrainDeadlineOnlyMovesForward(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Not started: components report no calls, so hold the drain open by
	// checking the deadlines before the goroutine's first look.
	d.mu.Lock()
	d.drainSince = time.Now()
	d.drainDeadline = time.Now().Add(time.Hour)
	d.mu.Unlock()
	st := d.Drain(2 * time.Hour)
	if time.Until(st.Deadline) > time.Hour {
		t.Errorf("a later deadline replaced an earlier one: %v", st.Deadline)
	}
	st = d.Drain(time.Minute)
	if time.Until(st.Deadline) > time.Minute {
		t.Errorf("an earlier deadline was not taken: %v", st.Deadline)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
