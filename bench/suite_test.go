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
)

func fakeReport(target string, pps float64, cpu float64, p99 float64) *Report {
	lat := NewLatencyRecorder()
	for i := 1; i <= 100; i++ {
		lat.Record(time.Duration(float64(i)/100*p99) * time.Microsecond)
	}
	tl := NewTimeline(100 * time.Millisecond)
	for i := 0; i < 50; i++ {
		tl.Add(time.Duration(i)*10*time.Millisecond, 172)
	}
	d := Direction{Name: "internal->cloud", Streams: 1, PayloadBytes: 160, Sent: 1000, Received: 1000, PPS: pps,
		Latency: lat.Summary(), Throughput: tl.Points()}
	return &Report{Kind: "srtp", Target: target, Directions: []Direction{d},
		SUT: &SUTStats{PID: 1, CPUSeconds: cpu, PacketsPerCPUSecond: 1000 / cpu, RSSKiB: 20480}}
}

func TestSuiteReport(t *testing.T) {
	dir := t.TempDir()
	c := suiteCase{kind: "gateway", streams: 1, size: 160, max: true}
	rows := []suiteRow{
		{Target: "mediaedge gateway", Case: c.String(), c: c, Report: fakeReport("mediaedge gateway", 30000, 0.2, 400)},
		{Target: "rtpengine", Case: c.String(), c: c, Report: fakeReport("rtpengine", 20000, 0.3, 800)},
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
		// 1000/0.2 = 5000 vs 1000/0.3 = 3333 packets per CPU-second
		"packets per CPU-second 5000 vs 3333 (1.50x)",
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
