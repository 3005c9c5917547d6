package main

import (
	"strings"
	"testing"

	"github.com/mediaedge/mediaedge/bench/report"
)

func fakeRun(n, rep int, target string, machineUS float64) run {
	r := &report.Report{Kind: "turn", Target: target,
		Directions: []report.Direction{{Streams: n, PayloadBytes: 160, OfferedPPS: 20000, Sent: 100, Received: 100, PPS: 20000}},
		Machine:    &report.MachineStats{USPerRoundTrip: machineUS}}
	if target == "direct" {
		r.Mode = report.ModeDirect
	}
	return run{n: n, size: 160, rep: rep, target: target, rpt: r}
}

// lossy makes r lose 5 of its 100 round trips.
func lossy(r run) run {
	d := &r.rpt.Directions[0]
	d.Received, d.Lost, d.LossPct = 95, 5, 5
	return r
}

// TestSummarize: each repetition's hop is taken against the direct run of
// the same repetition, then the median over repetitions; the ratio is
// coturn's median hop over the target's.
func TestSummarize(t *testing.T) {
	runs := []run{
		fakeRun(100, 1, "direct", 20), fakeRun(100, 1, "coturn", 35), fakeRun(100, 1, "fastpath-on", 22),
		fakeRun(100, 2, "direct", 30), fakeRun(100, 2, "coturn", 44), fakeRun(100, 2, "fastpath-on", 33),
		fakeRun(100, 3, "direct", 10), fakeRun(100, 3, "coturn", 26), lossy(fakeRun(100, 3, "fastpath-on", 12)),
		fakeRun(1000, 1, "direct", 20), fakeRun(1000, 1, "fastpath-on", 19),
	}
	rows := summarize(runs)
	want := []struct {
		n      int
		target string
		hop    float64
		ratio  float64
		ok     bool
	}{
		{100, "direct", 0, 0, false},
		{100, "coturn", 15, 1, true}, // hops 15, 14, 16
		{100, "fastpath-on", 2, 7.5, true},
		{1000, "direct", 0, 0, false},
		{1000, "fastpath-on", -1, 0, false},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.n != w.n || r.target != w.target || (w.target != "direct" && r.hop.us != w.hop) || r.hop.ratioOK != w.ok || r.hop.ratio != w.ratio {
			t.Errorf("row %d: %+v, want %+v", i, r, w)
		}
	}
	var b strings.Builder
	if err := write(&b, rows); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| 100 | 160 | fastpath-on | 3 | 20000 | 0.000 (one rep 5.000) |", "| 7.50x |", "hop in the noise", "fastpath-on, 160 B: hop µs/rt [2.00 -1.00] at [100 1000] allocations: not flat"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table without %q:\n%s", s, b.String())
		}
	}
}
