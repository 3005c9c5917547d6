package report

import (
	"math"
	"testing"
	"time"
)

// A four-packet G.711 trace (8000 Hz, 160 samples per packet) whose jitter
// is worked out by hand from RFC 3550 section 6.4.1:
//
//	packet  RTP ts  arrival  transit (ts units)  D    J
//	0       0       0 ms     0                   -    0
//	1       160     20 ms    0                   0    0
//	2       320     45 ms    40                  40   0 + (40-0)/16 = 2.5
//	3       480     60 ms    0                   -40  2.5 + (40-2.5)/16 = 4.84375
//
// 4.84375 units / 8000 Hz = 0.60546875 ms.
func TestJitterHandComputed(t *testing.T) {
	var j Jitter
	j.SetClockRate(8000)
	trace := []struct {
		ts      uint32
		arrival time.Duration
		want    float64
	}{
		{0, 0, 0},
		{160, 20 * time.Millisecond, 0},
		{320, 45 * time.Millisecond, 2.5},
		{480, 60 * time.Millisecond, 4.84375},
	}
	for i, p := range trace {
		j.Update(p.arrival, p.ts)
		if math.Abs(j.Units()-p.want) > 1e-9 {
			t.Fatalf("after packet %d: J = %v, want %v", i, j.Units(), p.want)
		}
	}
	if got, want := j.Duration(), time.Duration(605468); got < want || got > want+time.Nanosecond {
		t.Errorf("jitter %v, want %v", got, want)
	}
}

// The same trace through UpdateTransit: transit times 0, 0, 5, 0 ms are
// 0, 0, 40, 0 timestamp units, hence the same J.
func TestJitterTransitHandComputed(t *testing.T) {
	var j Jitter
	j.SetClockRate(8000)
	for _, tr := range []time.Duration{0, 0, 5 * time.Millisecond, 0} {
		j.UpdateTransit(tr)
	}
	if math.Abs(j.Units()-4.84375) > 1e-9 {
		t.Fatalf("J = %v, want 4.84375", j.Units())
	}
}

func TestJitterTimestampWrap(t *testing.T) {
	// The same trace as above, with timestamps that wrap past 2^32.
	var j Jitter
	j.SetClockRate(8000)
	base := uint32(math.MaxUint32 - 200)
	for _, p := range []struct {
		ts      uint32
		arrival time.Duration
	}{{base, 0}, {base + 160, 20 * time.Millisecond}, {base + 320, 45 * time.Millisecond}, {base + 480, 60 * time.Millisecond}} {
		j.Update(p.arrival, p.ts)
	}
	if math.Abs(j.Units()-4.84375) > 1e-6 {
		t.Fatalf("J = %v across a wrap, want 4.84375", j.Units())
	}
}

// Latencies of a tiny trace: send at 0, 20, 40, 60, 80 ms, received
// 1.0, 21.5, 42.0, 61.2 and 95.0 ms: 1000, 1500, 2000, 1200, 15000 µs.
// Sorted: 1000 1200 1500 2000 15000. HDR percentiles round to the highest
// value equivalent within 0.1 %.
func TestLatencyHandComputed(t *testing.T) {
	l := NewLatencyRecorder()
	sent := []time.Duration{0, 20, 40, 60, 80}
	recv := []time.Duration{1000, 21500, 42000, 61200, 95000} // µs
	for i := range sent {
		l.Record(recv[i]*time.Microsecond - sent[i]*time.Millisecond)
	}
	s := l.Summary()
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > want*0.001 {
			t.Errorf("%s = %v µs, want %v", name, got, want)
		}
	}
	if s.Count != 5 {
		t.Fatalf("count %d", s.Count)
	}
	near("p50", s.P50, 1500) // rank ceil(0.5*5) = 3rd
	near("p90", s.P90, 15000)
	near("p99", s.P99, 15000)
	near("max", s.Max, 15000)
	near("mean", s.Mean, (1000+1500+2000+1200+15000)/5.0)
	if last := s.CDF[len(s.CDF)-1]; last[1] != 1 {
		t.Errorf("CDF ends at %v", last)
	}
}

func TestLatencyPercentilesUniform(t *testing.T) {
	l := NewLatencyRecorder()
	for i := 1; i <= 10000; i++ {
		l.Record(time.Duration(i) * time.Microsecond)
	}
	s := l.Summary()
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, 5000}, {"p90", s.P90, 9000}, {"p99", s.P99, 9900}, {"p99.9", s.P999, 9990}, {"max", s.Max, 10000}} {
		if math.Abs(c.got-c.want) > c.want*0.001+0.01 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestTimeline(t *testing.T) {
	tl := NewTimeline(100 * time.Millisecond)
	for i := 0; i < 30; i++ {
		tl.Add(time.Duration(i)*10*time.Millisecond, 200)
	}
	pts := tl.Points()
	if len(pts) != 3 {
		t.Fatalf("%d bins", len(pts))
	}
	for _, p := range pts {
		if p.PPS != 100 || math.Abs(p.Mbps-0.16) > 1e-9 {
			t.Errorf("bin %+v, want 100 pps 0.16 Mbit/s", p)
		}
	}
}
