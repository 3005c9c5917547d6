package testutil

import (
	"testing"
	"time"
)

// pollEvery is how often Poll and WaitFor test their condition.
const pollEvery = 5 * time.Millisecond

// Poll tests cond until it holds or d passes. It reports how long that
// took and whether cond held.
func Poll(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(pollEvery)
	}
}

// WaitFor tests cond until it holds, and fails t naming what when d passes
// first. Give d generously: it bounds a wait on a busy machine, it does not
// measure anything.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if _, ok := Poll(d, cond); !ok {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
