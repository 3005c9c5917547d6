package soak

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/bench/report"
)

func netipLoopback(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
}

// StreamResult is one sampled direction: what was sent and what arrived
// (each index once), after the flow went quiet.
type StreamResult struct {
	Name     string
	Sent     int
	Received int
	// Bad counts packets that arrived but did not decrypt.
	Bad int
}

// Figure is the drift of one sampled figure after warm-up: the median of
// the first and of the last quarter of the samples.
type Figure struct {
	Name        string
	First, Last float64
	Min, Max    float64
	Drift       float64 // (Last-First)/First
	Pass        bool
}

// Result is a soak run's outcome.
type Result struct {
	Options        Options
	Log            string
	SetupSeconds   float64
	StopSeconds    float64
	Samples        []Sample
	Streams        []StreamResult
	Figures        []Figure
	Reloads        int
	ReloadsApplied int
	Churned        int
	Flaps          []FlapResult
	Counters       []string // the daemon's non-zero drop and refusal counters at the end
	// RcvbufErrors are datagrams full UDP socket buffers dropped during the
	// run (the soak's or the daemon's; in the soak's own namespace only
	// theirs).
	RcvbufErrors int64
	Errors       []string // error lines of the daemon's log
	RunErrors    []string // what went wrong on the soak's side
	Lost         int
	Pass         bool
	Failures     []string
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// evaluate applies the pass criteria: every figure within the tolerance
// after warm-up, no sampled packet lost, no error logged, every reload
// applied, a clean stop within the drain time.
func (r *Result) evaluate() {
	var post []Sample
	for _, s := range r.Samples {
		if s.T >= r.Options.WarmUp.Seconds() {
			post = append(post, s)
		}
	}
	get := []struct {
		name string
		f    func(Sample) float64
	}{
		{"RSS (KiB)", func(s Sample) float64 { return float64(s.RSSKiB) }},
		{"Go heap goal (bytes)", func(s Sample) float64 { return s.HeapGoal }},
		{"goroutines", func(s Sample) float64 { return s.Goroutines }},
		{"file descriptors", func(s Sample) float64 { return float64(s.FDs) }},
	}
	if len(post) < 4 {
		r.Failures = append(r.Failures, fmt.Sprintf("only %d samples after the warm-up of %v: run longer", len(post), r.Options.WarmUp))
	} else {
		q := len(post) / 4
		for _, g := range get {
			var first, last, all []float64
			for i, s := range post {
				v := g.f(s)
				all = append(all, v)
				if i < q {
					first = append(first, v)
				}
				if i >= len(post)-q {
					last = append(last, v)
				}
			}
			f := Figure{Name: g.name, First: median(first), Last: median(last), Min: math.Inf(1), Max: math.Inf(-1)}
			for _, v := range all {
				f.Min, f.Max = math.Min(f.Min, v), math.Max(f.Max, v)
			}
			if f.First > 0 {
				f.Drift = (f.Last - f.First) / f.First
			}
			f.Pass = math.Abs(f.Drift) <= r.Options.Tolerance
			if !f.Pass {
				r.Failures = append(r.Failures, fmt.Sprintf("%s drifted %+.1f %% after warm-up (%.0f to %.0f)", g.name, 100*f.Drift, f.First, f.Last))
			}
			r.Figures = append(r.Figures, f)
		}
	}
	for _, s := range r.Streams {
		if s.Received < s.Sent {
			r.Lost += s.Sent - s.Received
		}
		if s.Bad > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d packets did not decrypt", s.Name, s.Bad))
		}
	}
	if r.Lost > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d sampled packets lost", r.Lost))
	}
	if len(r.Errors) > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d error lines in the daemon's log", len(r.Errors)))
	}
	if r.ReloadsApplied != r.Reloads {
		r.Failures = append(r.Failures, fmt.Sprintf("%d reloads sent, %d applied", r.Reloads, r.ReloadsApplied))
	}
	if len(r.RunErrors) > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d errors on the soak's side", len(r.RunErrors)))
	}
	for _, f := range r.Flaps {
		if f.Err != "" {
			r.Failures = append(r.Failures, "uplink flap at "+fmt.Sprintf("%.0f s", f.T)+": "+f.Err)
		}
	}
	r.Pass = len(r.Failures) == 0
}

// write puts report.md, samples.csv, plot.svg and, when ffmpeg can render
// SVG, plot.png into dir.
func (r *Result) write(dir string) error {
	var csv bytes.Buffer
	csv.WriteString("t_s,rss_kib,heap_inuse_bytes,heap_goal_bytes,goroutines,fds,allocations,sessions\n")
	for _, s := range r.Samples {
		fmt.Fprintf(&csv, "%.1f,%d,%.0f,%.0f,%.0f,%d,%d,%d\n", s.T, s.RSSKiB, s.HeapBytes, s.HeapGoal, s.Goroutines, s.FDs, s.Allocations, s.Sessions)
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.csv"), csv.Bytes(), 0o644); err != nil {
		return err
	}
	line := func(label string, f func(Sample) float64) report.Series {
		var pts [][2]float64
		for _, s := range r.Samples {
			pts = append(pts, [2]float64{s.T / 60, f(s)})
		}
		return report.Series{Label: label, Points: pts}
	}
	series := func(label string, f func(Sample) float64) []report.Series { return []report.Series{line(label, f)} }
	panels := []report.PlotPanel{
		{XLabel: "time (min)", YLabel: "RSS (MiB)", Series: series("RSS", func(s Sample) float64 { return float64(s.RSSKiB) / 1024 })},
		{XLabel: "time (min)", YLabel: "Go heap (MiB)", Series: []report.Series{
			line("heap goal (next GC)", func(s Sample) float64 { return s.HeapGoal / (1 << 20) }),
			line("heap in use", func(s Sample) float64 { return s.HeapBytes / (1 << 20) })}},
		{XLabel: "time (min)", YLabel: "goroutines", Series: series("goroutines", func(s Sample) float64 { return s.Goroutines })},
		{XLabel: "time (min)", YLabel: "file descriptors", Series: series("open descriptors", func(s Sample) float64 { return float64(s.FDs) })},
	}
	var svg bytes.Buffer
	title := fmt.Sprintf("mediaedge soak: %d allocations, %d sessions, %v", r.Options.Allocations, r.Options.Sessions, r.Options.Duration)
	if err := report.WritePanelsSVG(&svg, title, panels); err != nil {
		return err
	}
	svgPath := filepath.Join(dir, "plot.svg")
	if err := os.WriteFile(svgPath, svg.Bytes(), 0o644); err != nil {
		return err
	}
	plot := "plot.svg"
	if ff, err := exec.LookPath("ffmpeg"); err == nil {
		// Debian's ffmpeg renders SVG through librsvg.
		if out, err := exec.Command(ff, "-loglevel", "error", "-y", "-i", svgPath, filepath.Join(dir, "plot.png")).CombinedOutput(); err == nil {
			plot = "plot.png"
		} else {
			r.RunErrors = append(r.RunErrors, "rendering plot.png: "+strings.TrimSpace(string(out)))
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown(plot)), 0o644)
}

func (r *Result) markdown(plot string) string {
	var b strings.Builder
	o := r.Options
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "# mediaedge soak: %s\n\n", verdict)
	fmt.Fprintf(&b, "%s; %v measured after %.0f s of set-up; %d idle TURN allocations and %d idle gateway sessions, "+
		"media at %d packets/s each way on %d allocations and %d sessions, %.0f %% churn every %v (%d replaced), "+
		"SIGHUP every %v (%d sent, %d applied), samples every %v, warm-up %v, tolerance %.0f %%. "+
		"%s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), o.Duration, r.SetupSeconds, o.Allocations, o.Sessions,
		o.PPS, o.MediaAllocations, o.MediaSessions, 100*o.Churn, o.ChurnEvery, r.Churned,
		o.ReloadEvery, r.Reloads, r.ReloadsApplied, o.SampleEvery, o.WarmUp, 100*o.Tolerance, r.flapSummary())
	if len(r.Failures) > 0 {
		b.WriteString("## Failures\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "* %s\n", f)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Figures after warm-up\n\nMedian of the first and of the last quarter of the samples after warm-up.\n\n")
	b.WriteString("| figure | first | last | drift | min | max | |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, f := range r.Figures {
		ok := "ok"
		if !f.Pass {
			ok = "**drift**"
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %+.1f %% | %.0f | %.0f | %s |\n", f.Name, f.First, f.Last, 100*f.Drift, f.Min, f.Max, ok)
	}
	fmt.Fprintf(&b, "\n![figures](%s)\n\n", plot)
	b.WriteString("## Sampled media\n\nSent and received (each packet index once) after the flows went quiet.\n\n")
	b.WriteString("| stream | sent | received | lost | undecryptable |\n| --- | ---: | ---: | ---: | ---: |\n")
	for _, s := range r.Streams {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", s.Name, s.Sent, s.Received, max(0, s.Sent-s.Received), s.Bad)
	}
	if len(r.Counters) > 0 {
		b.WriteString("\nThe daemon's non-zero drop, refusal and error counters at the end:\n\n")
		for _, c := range r.Counters {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	fmt.Fprintf(&b, "\nUDP datagrams dropped by full socket buffers during the run (/proc/net/snmp RcvbufErrors%s): %d.\n",
		map[bool]string{true: ", the soak's own namespace", false: ", the whole host"}[o.Uplink != ""], r.RcvbufErrors)
	fmt.Fprintf(&b, "\nThe daemon stopped %.1f s after SIGTERM. Error lines in its log: %d.\n", r.StopSeconds, len(r.Errors))
	for i, e := range r.Errors {
		if i == 10 {
			fmt.Fprintf(&b, "* ... %d more\n", len(r.Errors)-10)
			break
		}
		fmt.Fprintf(&b, "* `%s`\n", e)
	}
	if len(r.RunErrors) > 0 {
		b.WriteString("\nErrors on the soak's side:\n\n")
		for _, e := range r.RunErrors {
			fmt.Fprintf(&b, "* %s\n", e)
		}
	}
	return b.String()
}

func (r *Result) flapSummary() string {
	if r.Options.Uplink == "" {
		return "Uplink flap: skipped (" + r.Options.FlapNote + ")."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Uplink %s (a veth in the soak's own network namespace) taken down for %v every %v: %d flaps;",
		r.Options.Uplink, r.Options.FlapDown, r.Options.FlapEvery, len(r.Flaps))
	for _, f := range r.Flaps {
		fmt.Fprintf(&b, " at %.0f s policy %s while down, %s %.1f s after up;", f.T, f.StateDown, f.StateUp, f.RecoverSeconds)
	}
	return strings.TrimSuffix(b.String(), ";") + "."
}
