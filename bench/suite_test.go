package bench

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/report"
)

func fakeReport(target string, pps float64, cpu float64, p99 float64) *report.Report {
	lat := report.NewLatencyRecorder()
	for i := 1; i <= 100; i++ {
		lat.Record(time.Duration(float64(i)/100*p99) * time.Microsecond)
	}
	tl := report.NewTimeline(100 * time.Millisecond)
	for i := 0; i < 50; i++ {
		tl.Add(time.Duration(i)*10*time.Millisecond, 172)
	}
	d := report.Direction{Name: "internal->cloud", Streams: 1, PayloadBytes: 160, Sent: 1000, Received: 1000, PPS: pps,
		Latency: lat.Summary(), Throughput: tl.Points()}
	return &report.Report{Kind: "srtp", Target: target, Directions: []report.Direction{d},
		SUT: &report.SUTStats{PID: 1, CPUSeconds: cpu, PacketsPerCPUSecond: 1000 / cpu, RSSKiB: 20480}}
}

func TestSuiteReport(t *testing.T) {
	dir := t.TempDir()
	c := suiteCase{kind: "gateway", streams: 1, size: 160, max: true}
	rows := []suiteRow{
		{Target: "mediaedge gateway", Case: c.String(), c: c, Report: fakeReport("mediaedge gateway", 30000, 0.4, 400)},
		{Target: "rtpengine", Case: c.String(), c: c, Report: fakeReport("rtpengine", 20000, 0.6, 800)},
		{Target: "coturn", Case: "N=1", c: suiteCase{kind: "relay", streams: 1, size: 160}, Error: "coturn: not installed"},
	}
	if err := writeSuiteReport(dir, []string{"date: test"}, []string{"a note"}, []suiteCase{c, rows[2].c}, rows, 1); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| mediaedge gateway | S=1 L=160 max rate | internal->cloud | 1 | 160 | 1000 | 1000 |",
		"| rtpengine | S=1 L=160 max rate |",
		// 1000/0.4 = 2500 vs 1000/0.6 = 1667 packets per CPU-second
		"packets per CPU-second 2500 vs 1667 (1.50x)",
		// the 99th of 100 samples spread evenly to 400 and 800 µs
		"p99 latency 396 vs 792 µs (0.50x)",
		"error: coturn: not installed",
		"note: a note",
		"![gateway S=1 L=160 max rate](gateway-1-160-max.svg)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	f, err := os.Open(filepath.Join(dir, "gateway-1-160-max.svg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	lines := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("plot is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	// two targets: a CDF and a throughput line each
	if lines != 4 {
		t.Errorf("%d lines in the plot, want 4", lines)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.json")); err != nil {
		t.Error(err)
	}
}

func TestSuiteRatiosRefuseLossAndTooLittleCPU(t *testing.T) {
	c := suiteCase{kind: "gateway", streams: 1, size: 160, max: true}
	row := func(target string, cpu float64, received int64) suiteRow {
		r := fakeReport(target, 1000, cpu, 400)
		d := &r.Directions[0]
		d.Received, d.Lost = received, d.Sent-received
		d.LossPct = 100 * float64(d.Lost) / float64(d.Sent)
		return suiteRow{Target: target, Case: c.String(), c: c, Report: r}
	}
	for _, tc := range []struct {
		name string
		rows []suiteRow
		want string
	}{
		{"peer lost packets", []suiteRow{row("mediaedge gateway", 1, 1000), row("rtpengine", 1, 990)},
			"not compared: 0.0 % vs 1.0 % of packets lost"},
		{"mediaedge lost packets", []suiteRow{row("mediaedge gateway", 1, 998), row("rtpengine", 1, 1000)},
			"not compared: 0.2 % vs 0.0 % of packets lost"},
		{"too little CPU", []suiteRow{row("mediaedge gateway", 0.29, 1000), row("rtpengine", 1, 1000)},
			"too little CPU time (under 0.3 s)"},
		{"comparable", []suiteRow{row("mediaedge gateway", 0.5, 1000), row("rtpengine", 1, 1000)},
			"packets per CPU-second 2000 vs 1000 (2.00x)"},
	} {
		got := suiteRatios("gateway", tc.rows)
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: got %q, want it to contain %q", tc.name, got, tc.want)
		}
	}
}
