package evloop

import "testing"

// simulate runs the coalescer against an open-loop source that sends a
// burst of datagrams every gap ns for a second: the loop parks until a
// datagram arrives, wakes wake ns later, reads everything that arrived
// (a full batch is 64), and sleeps a window when the coalescer says so.
// It returns the fraction of rounds after the first 20 windows that were
// followed by a sleep.
func simulate(minBatch int, gap int64, burst int, window int64) float64 {
	const wake = 5_000
	co := coalescer{minBatch: int64(minBatch)}
	arrived := func(t int64) int64 { return (t/gap + 1) * int64(burst) } // datagrams sent by t
	now, read := int64(0), int64(0)
	rounds, sleeps := 0, 0
	for now < 1e9 {
		pkts := arrived(now) - read
		full := pkts >= 64
		pkts = min(pkts, 64)
		read += pkts
		sleep := co.after(now+1e9, int(pkts), full, window)
		if now > 20*window {
			rounds++
			if sleep {
				sleeps++
			}
		}
		switch {
		case sleep:
			now += window
		case pkts > 0 || arrived(now) > read:
			now += wake // poll again at once
		default:
			now = (now/gap+1)*gap + wake // park until the next burst
		}
	}
	return float64(sleeps) / float64(rounds)
}

// TestCoalescer: the loop sleeps for windows only when the load fills
// them.
func TestCoalescer(t *testing.T) {
	const c = 500_000 // 500 µs
	for _, tc := range []struct {
		name     string
		minBatch int
		gap      int64 // ns between bursts
		burst    int
		window   int64
		min, max float64 // fraction of rounds followed by a sleep
	}{
		// 4,000 datagrams/s, as 2,000 TURN round trips/s: two per window.
		{name: "light load is served at once", minBatch: 8, gap: 250_000, burst: 1, window: c, max: 0},
		{name: "bursts of a light load", minBatch: 8, gap: 2_500_000, burst: 10, window: c, max: 0},
		// 80,000 datagrams/s, as 40,000 round trips/s: 40 per window.
		{name: "heavy load coalesces", minBatch: 8, gap: 12_500, burst: 1, window: c, min: 0.9, max: 1},
		{name: "a full batch never sleeps", minBatch: 8, gap: 1_000, burst: 100, window: c, max: 0},
		{name: "no window", minBatch: 8, gap: 12_500, burst: 1, max: 0},
		// The gateway batches from 100 calls x 50 pps on (3.5 per 700 µs).
		{name: "gateway at 5,000 pps", minBatch: 2, gap: 200_000, burst: 1, window: 700_000, min: 0.9, max: 1},
		{name: "gateway at 1,000 pps", minBatch: 2, gap: 1_000_000, burst: 1, window: 700_000, max: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := simulate(tc.minBatch, tc.gap, tc.burst, tc.window); got < tc.min || got > tc.max {
				t.Errorf("slept after %.2f of the rounds, want %.2f to %.2f", got, tc.min, tc.max)
			}
		})
	}
}

// TestCoalescerClosedLoop: a closed loop (one datagram in flight) looks
// busy while nothing is delayed, and collects one datagram per window once
// the loop sleeps: the coalescer stops after that sleep and measures a
// whole span again before it tries once more.
func TestCoalescerClosedLoop(t *testing.T) {
	const c = 500_000
	co := coalescer{minBatch: 8}
	now := int64(1e9)
	sleeps, rounds := 0, 0
	for now < 1e9+1e9 { // one second
		rounds++
		if co.after(now, 1, false, c) {
			sleeps++
			now += c
		}
		now += 20_000 // the round trip without sleeping
	}
	if sleeps*100 > rounds {
		t.Errorf("slept after %d of %d rounds, want under 1 %%", sleeps, rounds)
	}
}

// TestCoalescerIdle: after an idle spell the first datagram is served at
// once, whatever the load before.
func TestCoalescerIdle(t *testing.T) {
	const c = 500_000
	co := coalescer{minBatch: 8}
	now := int64(1e9)
	for i := 0; i < 1000; i++ {
		co.after(now, 4, false, c)
		now += 10_000
	}
	if !co.on {
		t.Fatal("heavy load did not turn coalescing on")
	}
	now += 1e9
	if co.after(now, 1, false, c) {
		t.Error("the first datagram after an idle second waits for a window")
	}
}

// TestCoalescerBurst: one burst in a light load (a sender catching up
// after a stall) is not load: the loop keeps serving at once.
func TestCoalescerBurst(t *testing.T) {
	const c = 500_000
	co := coalescer{minBatch: 8}
	now := int64(1e9)
	for i := 0; i < 1000; i++ {
		pkts := 1
		if i == 500 {
			pkts = 200
		}
		if co.after(now, pkts, false, c) {
			t.Fatalf("round %d (%d datagrams) sleeps", i, pkts)
		}
		now += 250_000
	}
}
