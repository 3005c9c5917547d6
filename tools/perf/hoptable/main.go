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

// row is the medians of one target in one scenario.
type row struct {
	n, size                 int
	target                  string
	reps, failedReps        int
	rate, loss, p50, p99    float64
	benchPct                float64
	sutUS, machineUS, hopUS float64
	hopN                    int
	ratio                   float64
	ratioOK                 bool
	setupFailed, lost       int64
}

type key struct {
	n, size int
	target  string
}

// summarize computes the rows: per scenario and target, the medians over
// repetitions; the hop of each repetition against the direct run of the
// same repetition.
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
		var rate, loss, p50, p99, sut, mach, hop, bench []float64
		for _, r := range rs {
			d := r.rpt.Directions[0]
			w.setupFailed += int64(r.rpt.SetupFailed)
			w.lost += d.Lost
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
			if k.target != "direct" {
				if h, err := report.HopUS(r.rpt, direct[[3]int{r.n, r.size, r.rep}]); err == nil {
					hop = append(hop, h)
				}
			}
		}
		w.rate, w.loss, w.p50, w.p99 = report.Median(rate), report.Median(loss), report.Median(p50), report.Median(p99)
		w.sutUS, w.machineUS, w.hopUS, w.hopN = report.Median(sut), report.Median(mach), report.Median(hop), len(hop)
		w.benchPct = report.Median(bench)
		rows = append(rows, w)
	}
	coturn := map[[2]int]float64{}
	for _, w := range rows {
		if w.target == "coturn" && w.hopN > 0 {
			coturn[[2]int{w.n, w.size}] = w.hopUS
		}
	}
	for i := range rows {
		if c, ok := coturn[[2]int{rows[i].n, rows[i].size}]; ok && rows[i].hopN > 0 {
			rows[i].ratio, rows[i].ratioOK = report.HopRatio(c, rows[i].hopUS)
		}
	}
	order := map[string]int{"direct": 0, "coturn": 1}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.size != b.size {
			return a.size < b.size
		}
		if a.n != b.n {
			return a.n < b.n
		}
		oa, ok := order[a.target]
		if !ok {
			oa = 2
		}
		ob, ok := order[b.target]
		if !ok {
			ob = 2
		}
		if oa != ob {
			return oa < ob
		}
		return a.target < b.target
	})
	return rows
}

func num(v float64, format string) string {
	if v != v { // NaN: no figure
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func write(w io.Writer, rows []row) error {
	fmt.Fprintln(w, "| allocations | size | target | reps | rt/s | loss % | RTT p50 µs | RTT p99 µs | server CPU µs/rt | machine µs/rt | hop µs/rt | coturn's hop / this hop | bench CPU % |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		hop, ratio := "-", "-"
		if r.target != "direct" {
			hop = num(r.hopUS, "%.2f")
			switch {
			case r.target == "coturn" && r.hopN > 0:
				ratio = "1.00x"
			case r.ratioOK:
				ratio = fmt.Sprintf("%.2fx", r.ratio)
			case r.hopN > 0 && r.hopUS <= 0:
				ratio = "hop in the noise"
			}
		}
		reps := fmt.Sprint(r.reps)
		if r.failedReps > 0 {
			reps += fmt.Sprintf(" (%d failed)", r.failedReps)
		}
		loss := num(r.loss, "%.3f")
		if r.setupFailed > 0 {
			loss += fmt.Sprintf(" (%d set-ups failed)", r.setupFailed)
		}
		fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.n, r.size, r.target, reps,
			num(r.rate, "%.0f"), loss, num(r.p50, "%.0f"), num(r.p99, "%.0f"), num(r.sutUS, "%.2f"),
			num(r.machineUS, "%.2f"), hop, ratio, num(r.benchPct, "%.0f"))
	}
	// Flatness of each target's hop from the smallest to the largest N.
	type series struct {
		ns   []int
		hops []float64
	}
	flat := map[[2]string]*series{}
	var keys [][2]string
	for _, r := range rows {
		if r.target == "direct" || r.hopN == 0 {
			continue
		}
		k := [2]string{fmt.Sprint(r.size), r.target}
		if flat[k] == nil {
			flat[k] = &series{}
			keys = append(keys, k)
		}
		flat[k].ns = append(flat[k].ns, r.n)
		flat[k].hops = append(flat[k].hops, r.hopUS)
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
		fmt.Fprintf(w, "\n%s, %s B: hop µs/rt %v at %v allocations: %s (±15 %% of the first)", k[1], k[0], fmtAll(s.hops), s.ns, verdict)
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
