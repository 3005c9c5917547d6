package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Direction is the result of one direction of a run: internal to cloud,
// cloud to internal, or the round trips of a TURN run.
type Direction struct {
	// Name says which way the packets went ("internal->cloud").
	Name string `json:"name"`
	// Streams is the number of streams (or TURN allocations).
	Streams int `json:"streams"`
	// PayloadBytes is the RTP payload size; 0 when it varies (capture).
	PayloadBytes int `json:"payload_bytes"`
	// OfferedPPS is the aggregate rate asked for; 0 means as fast as the
	// window allows.
	OfferedPPS float64 `json:"offered_pps"`

	Sent       int64 `json:"sent"`
	Received   int64 `json:"received"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	Reordered  int64 `json:"reordered"`
	// FailedAuth counts packets that did not authenticate with the
	// expected key; BadPayload those that did but whose payload, SSRC or
	// sequence number differed from what was sent.
	FailedAuth int64 `json:"failed_auth"`
	BadPayload int64 `json:"bad_payload"`
	// ReKeys counts switches to a new key of the system under test's
	// output during the run.
	ReKeys int64 `json:"rekeys,omitempty"`
	// Unknown counts datagrams that belong to no stream of the run.
	Unknown int64 `json:"unknown"`
	// SendErrors counts send calls that failed.
	SendErrors int64   `json:"send_errors"`
	LossPct    float64 `json:"loss_pct"`

	// DurationS is the time from the first send to the last receive.
	DurationS float64 `json:"duration_s"`
	// PPS and Mbps are the received rate (Mbps counts UDP payload bytes).
	PPS  float64 `json:"pps"`
	Mbps float64 `json:"mbps"`

	Latency LatencySummary `json:"latency"`
	// JitterMs is the RFC 3550 interarrival jitter, mean over streams;
	// JitterMaxMs the worst stream.
	JitterMs    float64 `json:"jitter_ms"`
	JitterMaxMs float64 `json:"jitter_max_ms"`

	// RTCP is the SRTCP check, when one ran.
	RTCP *RTCPResult `json:"rtcp,omitempty"`
	// Throughput is the received rate over time.
	Throughput []ThroughputPoint `json:"throughput,omitempty"`
}

// Failed is the number of packets that failed verification.
func (d *Direction) Failed() int64 { return d.FailedAuth + d.BadPayload }

// RTCPResult is the outcome of the SRTCP part of a run.
type RTCPResult struct {
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
	Failed   int64 `json:"failed"`
}

// SUTStats is what the system under test spent during a measurement.
type SUTStats struct {
	PID int `json:"pid"`
	// CPUSeconds is utime+stime during the measurement (10 ms ticks).
	CPUSeconds float64 `json:"cpu_s"`
	// CPUPercent is CPUSeconds over the wall time, in % of one core.
	CPUPercent float64 `json:"cpu_pct"`
	// PacketsPerCPUSecond is packets forwarded per CPU-second; 0 when the
	// process used less than one tick.
	PacketsPerCPUSecond float64 `json:"packets_per_cpu_s"`
	// RSSKiB is the resident set size at the end.
	RSSKiB int64 `json:"rss_kib"`
	// RSSStartKiB is the resident set size at the start.
	RSSStartKiB int64 `json:"rss_start_kib"`
	// USPerRoundTrip is CPUSeconds per verified round trip in
	// microseconds (TURN runs only).
	USPerRoundTrip float64 `json:"cpu_us_per_round_trip,omitempty"`
}

// MachineStats is the busy CPU time of the whole machine during a
// measurement: user+nice+system+irq+softirq+steal of all CPUs from
// /proc/stat. Kernel work in softirq context (loopback delivery, a BPF
// program forwarding at TC) is charged to whichever process happens to
// run, so only this figure counts it whoever ran it; it also counts
// everything else the machine did meanwhile, bench included.
type MachineStats struct {
	// CPUSeconds is the busy time over all CPUs (10 ms ticks).
	CPUSeconds float64 `json:"cpu_s"`
	// CPUs is the number of CPUs /proc/stat lists.
	CPUs int `json:"cpus"`
	// WallSeconds is the wall time between the two readings.
	WallSeconds float64 `json:"wall_s"`
	// CPUPercent is CPUSeconds over the wall time, in % of one core.
	CPUPercent float64 `json:"cpu_pct"`
	// USPerRoundTrip is CPUSeconds per verified round trip, in µs.
	USPerRoundTrip float64 `json:"cpu_us_per_round_trip,omitempty"`
}

// Report is the result of one bench run, printed as a table, JSON or an
// SVG plot.
type Report struct {
	// Kind is "srtp", "turn" or "verify".
	Kind string `json:"kind"`
	// Target names the system under test.
	Target string `json:"target"`
	// Started is when the measurement began.
	Started time.Time `json:"started"`
	// Directions holds one entry per direction measured.
	Directions []Direction `json:"directions"`
	// SUT is the system under test's CPU and memory, when its PID was
	// given.
	SUT *SUTStats `json:"sut,omitempty"`
	// Machine is the whole machine's busy CPU time during the
	// measurement (TURN runs).
	Machine *MachineStats `json:"machine,omitempty"`
	// Bench is what bench itself (load generator and echo peer) spent
	// during the measurement (TURN runs).
	Bench *SUTStats `json:"bench,omitempty"`
	// Mode says what carried the packets when it is not the obvious
	// ("direct": bench's sockets straight to its echo peer, no server).
	Mode string `json:"mode,omitempty"`
	// SetupFailed counts the streams (TURN allocations) whose set-up
	// failed; the run went on with the others.
	SetupFailed int `json:"setup_failed,omitempty"`
	// Notes are remarks for the reader (harness limits, skipped parts).
	Notes []string `json:"notes,omitempty"`
}

// Received is the number of packets received in all directions.
func (r *Report) Received() int64 {
	var n int64
	for i := range r.Directions {
		n += r.Directions[i].Received
	}
	return n
}

// OK reports whether every direction delivered every packet intact.
func (r *Report) OK() bool {
	if r.SetupFailed > 0 {
		return false
	}
	for i := range r.Directions {
		d := &r.Directions[i]
		if d.Lost != 0 || d.Failed() != 0 || d.Sent == 0 {
			return false
		}
		if d.RTCP != nil && (d.RTCP.Failed != 0 || d.RTCP.Received != d.RTCP.Sent) {
			return false
		}
	}
	return true
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteTable writes the human-readable table.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "%s bench against %s, %s\n", r.Kind, r.Target, r.Started.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "direction\tS\tsize\tsent\trecv\tlost\tloss%\tdup\treord\tfailed\tpps\tMbit/s\tp50 µs\tp90\tp99\tp99.9\tmax\tjitter ms\t")
	for i := range r.Directions {
		d := &r.Directions[i]
		size := "var"
		if d.PayloadBytes > 0 {
			size = fmt.Sprint(d.PayloadBytes)
		}
		l := d.Latency
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%.3f\t%d\t%d\t%d\t%.0f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%.3f\t\n",
			d.Name, d.Streams, size, d.Sent, d.Received, d.Lost, d.LossPct, d.Duplicated, d.Reordered, d.Failed(),
			d.PPS, d.Mbps, us(l.P50, l.Count), us(l.P90, l.Count), us(l.P99, l.Count), us(l.P999, l.Count),
			us(l.Max, l.Count), d.JitterMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i := range r.Directions {
		d := &r.Directions[i]
		if d.RTCP != nil {
			fmt.Fprintf(w, "SRTCP %s: sent %d, received and verified %d, failed %d\n", d.Name, d.RTCP.Sent, d.RTCP.Received, d.RTCP.Failed)
		}
		if d.ReKeys > 0 {
			fmt.Fprintf(w, "%s: output re-keyed %d times during the run, every packet verified across the switches\n", d.Name, d.ReKeys)
		}
		if d.FailedAuth+d.BadPayload+d.Unknown+d.SendErrors > 0 {
			fmt.Fprintf(w, "%s: %d failed authentication, %d bad payload, %d unknown, %d send errors\n",
				d.Name, d.FailedAuth, d.BadPayload, d.Unknown, d.SendErrors)
		}
	}
	if s := r.SUT; s != nil {
		ppc := perCPU(s.PacketsPerCPUSecond)
		if s.PacketsPerCPUSecond > 0 && s.CPUSeconds < 0.1 {
			ppc += " (rough: under ten 10 ms ticks)"
		}
		fmt.Fprintf(w, "system under test (pid %d): CPU %.2f s (%.1f %% of a core), %s packets per CPU-second, RSS %d KiB (start %d KiB)\n",
			s.PID, s.CPUSeconds, s.CPUPercent, ppc, s.RSSKiB, s.RSSStartKiB)
		if s.USPerRoundTrip > 0 {
			fmt.Fprintf(w, "system under test: %.2f µs CPU per round trip\n", s.USPerRoundTrip)
		}
	}
	if m := r.Machine; m != nil {
		fmt.Fprintf(w, "machine (%d CPUs, /proc/stat): busy %.2f CPU-s in %.2f s (%.1f %% of a core), %.2f µs per round trip\n",
			m.CPUs, m.CPUSeconds, m.WallSeconds, m.CPUPercent, m.USPerRoundTrip)
	}
	if b := r.Bench; b != nil {
		fmt.Fprintf(w, "bench itself (pid %d, sender, readers and echo peer): CPU %.2f s (%.1f %% of a core), RSS %d KiB\n",
			b.PID, b.CPUSeconds, b.CPUPercent, b.RSSKiB)
	}
	if r.SetupFailed > 0 {
		fmt.Fprintf(w, "set-up failed for %d stream(s): the figures are of the others\n", r.SetupFailed)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	verdict := "PASS: every packet arrived and verified"
	if !r.OK() {
		verdict = "FAIL: packets lost or failed verification"
	}
	_, err := fmt.Fprintln(w, verdict)
	return err
}

func us(v float64, count int64) string {
	if count == 0 {
		return "-"
	}
	if v >= 1000 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func perCPU(v float64) string {
	if v == 0 {
		return "- (under one 10 ms tick)"
	}
	return fmt.Sprintf("%.0f", v)
}

// MarkdownRow returns d as a row of the suite's markdown table, named
// name, with the system under test's figures when sut is not nil.
func (d *Direction) MarkdownRow(name string, sut *SUTStats) string {
	cpu, ppc, rss := "-", "-", "-"
	if sut != nil {
		cpu = fmt.Sprintf("%.1f", sut.CPUPercent)
		// Fewer than ten 10 ms ticks make the cost per packet noise.
		if sut.PacketsPerCPUSecond > 0 && sut.CPUSeconds >= 0.1 {
			ppc = fmt.Sprintf("%.0f", sut.PacketsPerCPUSecond)
		}
		rss = fmt.Sprintf("%d", sut.RSSKiB/1024)
	}
	l := d.Latency
	return strings.Join([]string{"", name, d.Name, fmt.Sprint(d.Streams), fmt.Sprint(d.PayloadBytes),
		fmt.Sprint(d.Sent), fmt.Sprint(d.Received), fmt.Sprintf("%.3f", d.LossPct), fmt.Sprint(d.Failed()),
		fmt.Sprintf("%.0f", d.PPS), fmt.Sprintf("%.2f", d.Mbps), us(l.P50, l.Count), us(l.P99, l.Count),
		us(l.P999, l.Count), us(l.Max, l.Count), fmt.Sprintf("%.3f", d.JitterMs), cpu, ppc, rss, ""}, " | ")
}
