package report

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency values are recorded in nanoseconds from 100 ns to 60 s with three
// significant digits (0.1 % resolution).
const (
	latencyMin    = 100
	latencyMax    = int64(60 * time.Second)
	latencyDigits = 3
)

// LatencyRecorder collects one-way latencies in an HDR histogram: constant
// memory, no allocation per sample. It is not safe for concurrent use; the
// receiver goroutine of one direction owns it.
type LatencyRecorder struct {
	h        *hdrhistogram.Histogram
	outRange int64
}

// NewLatencyRecorder returns an empty recorder.
func NewLatencyRecorder() *LatencyRecorder {
	return &LatencyRecorder{h: hdrhistogram.New(latencyMin, latencyMax, latencyDigits)}
}

// Record adds one latency sample. Values below the histogram's floor are
// recorded as the floor; values above 60 s are counted as out of range.
func (l *LatencyRecorder) Record(d time.Duration) {
	v := max(int64(d), latencyMin)
	if l.h.RecordValue(v) != nil {
		l.outRange++
	}
}

// Merge adds other's samples to l.
func (l *LatencyRecorder) Merge(other *LatencyRecorder) {
	l.h.Merge(other.h)
	l.outRange += other.outRange
}

// LatencySummary is the distribution of one-way latency in microseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p99_9_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
	// OutOfRange counts samples above 60 s (not in the percentiles).
	OutOfRange int64 `json:"out_of_range,omitempty"`
	// CDF holds (latency µs, cumulative fraction) points for plots.
	CDF [][2]float64 `json:"cdf,omitempty"`
}

// Summary computes the percentiles. HDR percentiles report the highest
// value equivalent to the sample at that rank (within 0.1 %).
func (l *LatencyRecorder) Summary() LatencySummary {
	s := LatencySummary{Count: l.h.TotalCount(), OutOfRange: l.outRange}
	if s.Count == 0 {
		return s
	}
	us := func(ns int64) float64 { return math.Round(float64(ns)/10) / 100 }
	s.P50 = us(l.h.ValueAtQuantile(50))
	s.P90 = us(l.h.ValueAtQuantile(90))
	s.P99 = us(l.h.ValueAtQuantile(99))
	s.P999 = us(l.h.ValueAtQuantile(99.9))
	s.Max = us(l.h.Max())
	s.Mean = math.Round(l.h.Mean()/10) / 100
	var cum int64
	for _, b := range l.h.Distribution() {
		if b.Count == 0 {
			continue
		}
		cum += b.Count
		s.CDF = append(s.CDF, [2]float64{us(b.To), float64(cum) / float64(s.Count)})
	}
	if len(s.CDF) > 400 {
		s.CDF = thinCDF(s.CDF, 400)
	}
	return s
}

// thinCDF keeps at most n points of a CDF, always the first and last.
func thinCDF(pts [][2]float64, n int) [][2]float64 {
	out := make([][2]float64, 0, n)
	step := float64(len(pts)-1) / float64(n-1)
	for i := 0; i < n; i++ {
		out = append(out, pts[int(math.Round(float64(i)*step))])
	}
	return out
}

// Jitter is the RFC 3550 section 6.4.1 interarrival jitter estimator of
// one stream: J += (|D| - J) / 16 where D is the difference in transit time
// of consecutive packets, in RTP timestamp units. The zero value is ready
// after SetClockRate. Not safe for concurrent use.
type Jitter struct {
	clockRate   float64
	lastTransit float64
	started     bool
	j           float64
}

// SetClockRate sets the RTP clock rate in Hz (8000 for G.711, 48000 for
// Opus).
func (j *Jitter) SetClockRate(hz uint32) { j.clockRate = float64(hz) }

// Update adds a packet that arrived at arrival (any fixed origin) with RTP
// timestamp ts. Packets must be given in arrival order.
func (j *Jitter) Update(arrival time.Duration, ts uint32) {
	if j.clockRate == 0 {
		return
	}
	// Transit in timestamp units; the RTP timestamp wraps, so only the
	// difference of consecutive transits is used, computed on the wrapped
	// 32-bit difference.
	r := arrival.Seconds() * j.clockRate
	transit := r - float64(ts)
	if j.started {
		d := transit - j.lastTransit
		// Undo a timestamp wrap between the two packets.
		if d > 1<<31 {
			d -= 1 << 32
		} else if d < -(1 << 31) {
			d += 1 << 32
		}
		j.j += (math.Abs(d) - j.j) / 16
	}
	j.lastTransit = transit
	j.started = true
}

// UpdateTransit adds a packet whose transit time (arrival minus send time,
// on one clock) is known exactly, as when bench is both sender and
// receiver. It is the same estimator with the RTP timestamp replaced by the
// true send time: the timestamps of a sender with a perfect clock. Unlike
// Update it stays meaningful when packets are sent faster than their
// timestamps advance (max-rate runs).
func (j *Jitter) UpdateTransit(transit time.Duration) {
	if j.clockRate == 0 {
		return
	}
	t := transit.Seconds() * j.clockRate
	if j.started {
		j.j += (math.Abs(t-j.lastTransit) - j.j) / 16
	}
	j.lastTransit = t
	j.started = true
}

// Units returns the jitter in RTP timestamp units, as an RTCP receiver
// report carries it.
func (j *Jitter) Units() float64 { return j.j }

// Duration returns the jitter as a duration.
func (j *Jitter) Duration() time.Duration {
	if j.clockRate == 0 {
		return 0
	}
	return time.Duration(j.j / j.clockRate * float64(time.Second))
}

// Timeline counts received packets and bytes in fixed time bins for the
// throughput plot. Not safe for concurrent use.
type Timeline struct {
	bin     time.Duration
	packets []int64
	bytes   []int64
}

// NewTimeline returns a timeline with bins of width bin.
func NewTimeline(bin time.Duration) *Timeline { return &Timeline{bin: bin} }

// Add counts one packet of n bytes received at offset t from the start.
// Bins grow on demand: amortised, not per packet.
func (tl *Timeline) Add(t time.Duration, n int) {
	if t < 0 {
		t = 0
	}
	i := int(t / tl.bin)
	if i > 1<<20 {
		return
	}
	for len(tl.packets) <= i {
		tl.packets = append(tl.packets, 0)
		tl.bytes = append(tl.bytes, 0)
	}
	tl.packets[i]++
	tl.bytes[i] += int64(n)
}

// Merge adds other's counts (same bin width) to tl.
func (tl *Timeline) Merge(other *Timeline) {
	for i := range other.packets {
		if i >= len(tl.packets) {
			tl.packets = append(tl.packets, 0)
			tl.bytes = append(tl.bytes, 0)
		}
		tl.packets[i] += other.packets[i]
		tl.bytes[i] += other.bytes[i]
	}
}

// ThroughputPoint is one bin of the throughput timeline.
type ThroughputPoint struct {
	T    float64 `json:"t_s"`
	PPS  float64 `json:"pps"`
	Mbps float64 `json:"mbps"`
}

// Points returns the timeline as rates per bin.
func (tl *Timeline) Points() []ThroughputPoint {
	out := make([]ThroughputPoint, len(tl.packets))
	s := tl.bin.Seconds()
	for i := range tl.packets {
		out[i] = ThroughputPoint{
			T:    float64(i) * s,
			PPS:  float64(tl.packets[i]) / s,
			Mbps: float64(tl.bytes[i]) * 8 / s / 1e6,
		}
	}
	return out
}
