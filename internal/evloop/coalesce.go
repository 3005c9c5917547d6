package evloop

// coalescer decides, after each round, whether the loop sleeps for the
// coalesce window before the next one.
//
// Sleeping trades latency for batching: a worker that goes back to the
// netpoller after every datagram pays a wake-up (two context switches) and
// a system call per datagram and direction, which under load costs more
// than relaying the datagram; sleeping one window and then taking all that
// arrived meanwhile spreads those costs over a batch. It pays only when a
// window actually collects a batch: at low load the sleep is pure added
// latency (a TURN round trip crosses the relay twice, so a 500 µs window
// cost about 1 ms of RTT at 2,000 round trips/s while collecting two
// datagrams). So the coalescer measures the arrival rate over spans of
// rateSpans windows and sleeps only while that rate fills a window with at
// least minBatch datagrams two spans in a row (a burst after a stall of the
// sender is not load). It stops below half of that rate, so that it does
// not flap at the threshold, and at once when a round that followed a
// sleep collected fewer than half of minBatch (a closed loop whose rate
// only looked high while nothing was delayed). A round whose read filled a
// whole batch never sleeps: the socket holds more already.
// Owned by the loop's goroutine.
type coalescer struct {
	minBatch int64 // set by New, never changed
	winStart int64 // start of the current measuring span
	count    int64 // datagrams in the span so far
	on       bool  // the rate fills windows: sleep after rounds
	hot      bool  // the last span's rate filled windows
	slept    bool  // the last round was followed by a sleep
}

// rateSpans is how many windows one rate measurement spans.
const rateSpans = 8

// after reports whether to sleep window c (ns) after a round at now that
// read pkts datagrams, full when a read filled its batch.
func (co *coalescer) after(now int64, pkts int, full bool, c int64) bool {
	if c <= 0 || pkts == 0 {
		co.slept = false
		return false
	}
	co.count += int64(pkts)
	if co.slept && co.on && 2*int64(pkts) < co.minBatch {
		// The window collected too little to be worth its latency.
		co.on, co.hot = false, false
		co.winStart, co.count = now, 0
	} else if span := now - co.winStart; span >= rateSpans*c {
		perWindow := co.count * c / span
		if co.on {
			co.on = 2*perWindow >= co.minBatch
		} else {
			co.on = co.hot && perWindow >= co.minBatch
		}
		co.hot = perWindow >= co.minBatch
		co.winStart, co.count = now, 0
	}
	co.slept = co.on && !full
	return co.slept
}
