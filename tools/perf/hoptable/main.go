// Command hoptable prints the table of tools/perf/relay-hop.sh: medians
// over repetitions of `mediaedge bench turn --json` reports, the relay
// hop's cost per round trip (machine CPU through the server minus the
// direct path's, same repetition) and how many times cheaper each hop is
// than coturn's.
//
// Usage: hoptable FILE...
//
// Each FILE is named n<allocations>-s<size>-r<rep>-<target>.json; the
// target "direct" is the baseline and "coturn" the reference.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mediaedge/mediaedge/bench/report"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hoptable n<N>-s<size>-r<rep>-<target>.json ...")
		os.Exit(2)
	}
	var runs []run
	for _, p := range os.Args[1:] {
		r, err := load(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hoptable:", err)
			continue
		}
		runs = append(runs, r)
	}
	if err := write(os.Stdout, summarize(runs)); err != nil {
		fmt.Fprintln(os.Stderr, "hoptable:", err)
		os.Exit(1)
	}
}

// run is one bench report with its place in the matrix.
type run struct {
	n, size, rep int
	target       string
	rpt          *report.Report
}

func load(path string) (run, error) {
	var r run
	base := strings.TrimSuffix(filepath.Base(path), ".json")
	parts := strings.SplitN(base, "-", 4)
	if len(parts) != 4 {
		return r, fmt.Errorf("%s: name is not n<N>-s<size>-r<rep>-<target>.json", path)
	}
	if _, err := fmt.Sscanf(parts[0]+" "+parts[1]+" "+parts[2], "n%d s%d r%d", &r.n, &r.size, &r.rep); err != nil {
		return r, fmt.Errorf("%s: name is not n<N>-s<size>-r<rep>-<target>.json", path)
	}
	r.target = parts[3]
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	r.rpt = &report.Report{}
	if err := json.Unmarshal(b, r.rpt); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	if len(r.rpt.Directions) != 1 {
		return r, fmt.Errorf("%s: not a bench turn report", path)
	}
	return r, nil
}

// hopStat is the median hop of a target in a scenario, over the
// repetitions that had one, and coturn's median hop over it.
type hopStat struct {
	us      float64
	n       int
	ratio   float64
	ratioOK bool
}

// row is the medians of one target in one scenario.
type row struct {
	n, size          int
	target           string
	reps, failedReps int
	rate, loss       float64
	maxLoss          float64
	p50, p99         float64
	benchPct         float64
	sutUS, machineUS float64
	hop, procHop     hopStat
	setupFailed      int64
}

type key struct {
	n, size int
	target  string
}

// summarize computes the rows: per scenario and target, the medians over
// repetitions; the hops of each repetition against the direct run of the
// same repetition (machine-wide, report.HopUS, and on the run's processes,
// report.ProcessHopUS).
func summarize(runs []run) []row {
	direct := map[[3]int]*report.Report{}
	groups := map[key][]run{}
	for _, r := range runs {
		if r.target == "direct" {
			direct[[3]int{r.n, r.size, r.rep}] = r.rpt
		}
		k := key{r.n, r.size, r.target}
		groups[k] = append(groups[k], r)
	}
	var rows []row
	for k, rs := range groups {
		w := row{n: k.n, size: k.size, target: k.target, reps: len(rs)}
		var rate, loss, p50, p99, sut, mach, hop, proc, bench []float64
		for _, r := range rs {
			d := r.rpt.Directions[0]
			w.setupFailed += int64(r.rpt.SetupFailed)
			if d.Received == 0 {
				w.failedReps++
				continue
			}
			rate = append(rate, d.PPS)
			loss = append(loss, d.LossPct)
			p50 = append(p50, d.Latency.P50)
			p99 = append(p99, d.Latency.P99)
			if s := r.rpt.SUT; s != nil && s.USPerRoundTrip > 0 {
				sut = append(sut, s.USPerRoundTrip)
			}
			if b := r.rpt.Bench; b != nil {
				bench = append(bench, b.CPUPercent)
			}
			if m := r.rpt.Machine; m != nil && m.USPerRoundTrip > 0 {
				mach = append(mach, m.USPerRoundTrip)
			}
			if k.target == "direct" {
				continue
			}
			dr := direct[[3]int{r.n, r.size, r.rep}]
			if h, err := report.HopUS(r.rpt, dr); err == nil {
				hop = append(hop, h)
			}
			if h, err := report.ProcessHopUS(r.rpt, dr); err == nil {
				proc = append(proc, h)
			}
		}
		w.rate, w.loss, w.p50, w.p99 = report.Median(rate), report.Median(loss), report.Median(p50), report.Median(p99)
		for _, l := range loss {
			w.maxLoss = max(w.maxLoss, l)
		}
		w.sutUS, w.machineUS, w.benchPct = report.Median(sut), report.Median(mach), report.Median(bench)
		w.hop = hopStat{us: report.Median(hop), n: len(hop)}
		w.procHop = hopStat{us: report.Median(proc), n: len(proc)}
		rows = append(rows, w)
	}
	ratios := func(get func(*row) *hopStat) {
		coturn := map[[2]int]float64{}
		for i := range rows {
			if h := get(&rows[i]); rows[i].target == "coturn" && h.n > 0 {
				coturn[[2]int{rows[i].n, rows[i].size}] = h.us
			}
		}
		for i := range rows {
			h := get(&rows[i])
			if c, ok := coturn[[2]int{rows[i].n, rows[i].size}]; ok && h.n > 0 {
				h.ratio, h.ratioOK = report.HopRatio(c, h.us)
			}
		}
	}
	ratios(func(r *row) *hopStat { return &r.hop })
	ratios(func(r *row) *hopStat { return &r.procHop })
	order := map[string]int{"direct": 0, "coturn": 1}
	rank := func(t string) int {
		if o, ok := order[t]; ok {
			return o
		}
		return 2
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.size != b.size {
			return a.size < b.size
		}
		if a.n != b.n {
			return a.n < b.n
		}
		if rank(a.target) != rank(b.target) {
			return rank(a.target) < rank(b.target)
		}
		return a.target < b.target
	})
	return rows
}

func num(v float64, format string) string {
	if math.IsNaN(v) { // no figure
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// cells returns a hop's two cells: µs per round trip and coturn's over it.
func (h hopStat) cells(target string) (string, string) {
	if target == "direct" {
		return "-", "-"
	}
	ratio := "-"
	switch {
	case h.n == 0:
	case h.ratioOK:
		ratio = fmt.Sprintf("%.2fx", h.ratio)
	case h.us <= 0:
		ratio = "hop in the noise"
	}
	return num(h.us, "%.2f"), ratio
}

func write(w io.Writer, rows []row) error {
	fmt.Fprintln(w, "| allocations | size | target | reps | rt/s | loss % | RTT p50 µs | RTT p99 µs | server CPU µs/rt | bench CPU % | machine µs/rt | hop µs/rt | coturn's hop / this hop | process hop µs/rt | coturn's / this (process) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		hop, ratio := r.hop.cells(r.target)
		phop, pratio := r.procHop.cells(r.target)
		reps := fmt.Sprint(r.reps)
		if r.failedReps > 0 {
			reps += fmt.Sprintf(" (%d failed)", r.failedReps)
		}
		loss := num(r.loss, "%.3f")
		if r.maxLoss > r.loss {
			// a median hides a repetition that lost packets
			loss += fmt.Sprintf(" (one rep %.3f)", r.maxLoss)
		}
		if r.setupFailed > 0 {
			loss += fmt.Sprintf(" (%d set-ups failed)", r.setupFailed)
		}
		fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.n, r.size, r.target, reps,
			num(r.rate, "%.0f"), loss, num(r.p50, "%.0f"), num(r.p99, "%.0f"), num(r.sutUS, "%.2f"),
			num(r.benchPct, "%.0f"), num(r.machineUS, "%.2f"), hop, ratio, phop, pratio)
	}
	// Flatness of each target's hops from the smallest to the largest N.
	type series struct {
		ns   []int
		hops []float64
	}
	flat := map[[3]string]*series{}
	var keys [][3]string
	for _, r := range rows {
		for _, h := range []struct {
			kind string
			s    hopStat
		}{{"hop", r.hop}, {"process hop", r.procHop}} {
			if r.target == "direct" || h.s.n == 0 {
				continue
			}
			k := [3]string{fmt.Sprint(r.size), r.target, h.kind}
			if flat[k] == nil {
				flat[k] = &series{}
				keys = append(keys, k)
			}
			flat[k].ns = append(flat[k].ns, r.n)
			flat[k].hops = append(flat[k].hops, h.s.us)
		}
	}
	for _, k := range keys {
		s := flat[k]
		if len(s.ns) < 2 {
			continue
		}
		verdict := "not flat"
		if report.Flat(s.hops, 0.15) {
			verdict = "flat"
		}
		fmt.Fprintf(w, "\n%s, %s B: %s µs/rt %s at %v allocations: %s (±15 %% of the first)", k[1], k[0], k[2], fmtAll(s.hops), s.ns, verdict)
	}
	_, err := fmt.Fprintln(w)
	return err
}

func fmtAll(xs []float64) string {
	var b []string
	for _, x := range xs {
		b = append(b, fmt.Sprintf("%.2f", x))
	}
	return "[" + strings.Join(b, " ") + "]"
}
