package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mediaedge/mediaedge/bench/report"
)

// writeSuiteReport writes report.md, report.json and one SVG per case.
func writeSuiteReport(dir string, env, notes []string, cases []suiteCase, rows []suiteRow, sutCPU int) error {
	var b strings.Builder
	b.WriteString("# mediaedge benchmark report\n\n")
	for _, e := range env {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	if sutCPU >= 0 {
		fmt.Fprintf(&b, "- load generator pinned to CPU 0, every system under test to CPU %d (figures are one core)\n", sutCPU)
	}
	b.WriteString("- every packet is verified (decrypted and compared byte for byte); latency is one-way for the gateway and a round trip for the relay\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "- note: %s\n", n)
	}
	for _, kind := range []string{"gateway", "relay"} {
		title := "SRTP re-keying gateway"
		if kind == "relay" {
			title = "TURN relay (UDP, ChannelData)"
		}
		fmt.Fprintf(&b, "\n## %s\n\n", title)
		b.WriteString("| target | case | direction | S | L | sent | received | loss % | failed | pps | Mbit/s | p50 µs | p99 µs | p99.9 µs | max µs | jitter ms | SUT CPU % | pkt/CPU-s | RSS MiB |\n")
		b.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range rows {
			if r.c.kind != kind {
				continue
			}
			if r.Report == nil || r.Error != "" {
				fmt.Fprintf(&b, "| %s | %s | error: %s |||||||||||||||||\n", r.Target, r.Case, strings.ReplaceAll(r.Error, "|", "/"))
				continue
			}
			for i := range r.Report.Directions {
				d := &r.Report.Directions[i]
				b.WriteString(strings.TrimSpace(d.MarkdownRow(r.Target+" | "+r.Case, r.Report.SUT)) + "\n")
			}
		}
		b.WriteString("\n")
		for _, line := range suiteRatios(kind, rows) {
			fmt.Fprintf(&b, "- %s\n", line)
		}
		for _, c := range cases {
			if c.kind != kind {
				continue
			}
			var cdf, tput []report.Series
			for _, r := range rows {
				if r.c != c || r.Report == nil {
					continue
				}
				for _, d := range r.Report.Directions {
					label := r.Target + " " + d.Name
					cdf = append(cdf, report.Series{Label: label, Points: d.Latency.CDF})
					var pts [][2]float64
					for _, p := range d.Throughput {
						pts = append(pts, [2]float64{p.T, p.PPS})
					}
					tput = append(tput, report.Series{Label: label, Points: pts})
				}
			}
			if len(cdf) == 0 {
				continue
			}
			f, err := os.Create(filepath.Join(dir, c.file()))
			if err != nil {
				return err
			}
			err = report.WriteTwoPanelSVG(f, fmt.Sprintf("%s %s", kind, c), report.LatencyLabel(kind), cdf, tput)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "\n### %s %s\n\n![%s %s](%s)\n", kind, c, kind, c, c.file())
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	j, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.json"), j, 0o644)
}

// suiteRatios compares mediaedge with each peer on the same case, same
// run: packets per CPU-second and p99 latency.
func suiteRatios(kind string, rows []suiteRow) []string {
	var out []string
	for _, me := range rows {
		if me.c.kind != kind || !strings.HasPrefix(me.Target, "mediaedge") || me.Report == nil || me.Report.SUT == nil {
			continue
		}
		for _, peer := range rows {
			if peer.c != me.c || strings.HasPrefix(peer.Target, "mediaedge") || peer.Report == nil || peer.Report.SUT == nil {
				continue
			}
			a, b := me.Report.SUT.PacketsPerCPUSecond, peer.Report.SUT.PacketsPerCPUSecond
			p99a, p99b := worstP99(me.Report), worstP99(peer.Report)
			s := fmt.Sprintf("%s: %s vs %s:", me.c, me.Target, peer.Target)
			lossA, lossB := lossPercent(me.Report), lossPercent(peer.Report)
			switch {
			case lossA > maxCompareLoss || lossB > maxCompareLoss:
				// A target that dropped packets did less work: neither its
				// cost per packet nor its latency compares.
				s += fmt.Sprintf(" not compared: %.1f %% vs %.1f %% of packets lost", lossA, lossB)
				out = append(out, s)
				continue
			case me.Report.SUT.CPUSeconds >= minCompareCPU && peer.Report.SUT.CPUSeconds >= minCompareCPU:
				s += fmt.Sprintf(" packets per CPU-second %.0f vs %.0f (%.2fx);", a, b, a/b)
			default:
				s += fmt.Sprintf(" too little CPU time (under %.1f s) to compare cost per packet;", minCompareCPU)
			}
			if p99a > 0 && p99b > 0 {
				s += fmt.Sprintf(" p99 latency %.0f vs %.0f µs (%.2fx)", p99a, p99b, p99a/p99b)
			}
			out = append(out, s)
		}
	}
	return out
}

// The kernel counts a process's CPU time in 10 ms ticks: under 0.3 s a
// ratio can be off by more than 3 %.
const minCompareCPU = 0.3

// maxCompareLoss is the loss (percent, worst direction) above which a case
// is not compared.
const maxCompareLoss = 0.1

// lossPercent is the worst direction's LossPct.
func lossPercent(r *report.Report) float64 {
	var w float64
	for _, d := range r.Directions {
		w = max(w, d.LossPct)
	}
	return w
}

func worstP99(r *report.Report) float64 {
	var w float64
	for _, d := range r.Directions {
		w = max(w, d.Latency.P99)
	}
	return w
}
