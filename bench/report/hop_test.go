package report

import (
	"errors"
	"math"
	"testing"
)

func turnRun(mode string, streams, size int, rate, machineUS float64) *Report {
	r := &Report{Kind: "turn", Mode: mode, Directions: []Direction{{Streams: streams, PayloadBytes: size, OfferedPPS: rate}}}
	if machineUS >= 0 {
		r.Machine = &MachineStats{USPerRoundTrip: machineUS}
	}
	return r
}

func TestHopUS(t *testing.T) {
	for _, tc := range []struct {
		name            string
		through, direct *Report
		want            float64
		wantErr         bool
	}{
		{"difference", turnRun("", 100, 160, 20000, 31.5), turnRun(ModeDirect, 100, 160, 20000, 20), 11.5, false},
		{"cheaper than direct", turnRun("", 100, 160, 20000, 19), turnRun(ModeDirect, 100, 160, 20000, 20), -1, false},
		{"other allocation count", turnRun("", 1000, 160, 20000, 30), turnRun(ModeDirect, 100, 160, 20000, 20), 0, true},
		{"other size", turnRun("", 100, 1200, 20000, 30), turnRun(ModeDirect, 100, 160, 20000, 20), 0, true},
		{"other rate", turnRun("", 100, 160, 40000, 30), turnRun(ModeDirect, 100, 160, 20000, 20), 0, true},
		{"direct is not direct", turnRun("", 100, 160, 20000, 30), turnRun("", 100, 160, 20000, 20), 0, true},
		{"both direct", turnRun(ModeDirect, 100, 160, 20000, 30), turnRun(ModeDirect, 100, 160, 20000, 20), 0, true},
		{"no machine figure", turnRun("", 100, 160, 20000, -1), turnRun(ModeDirect, 100, 160, 20000, 20), 0, true},
		{"nothing came back", turnRun("", 100, 160, 20000, 0), turnRun(ModeDirect, 100, 160, 20000, 20), 0, true},
		{"missing run", nil, turnRun(ModeDirect, 100, 160, 20000, 20), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HopUS(tc.through, tc.direct)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrNotComparable) {
				t.Errorf("error %v is not ErrNotComparable", err)
			}
			if err == nil && math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("hop %.3f µs, want %.3f", got, tc.want)
			}
		})
	}
}

func TestHopRatio(t *testing.T) {
	for _, tc := range []struct {
		name           string
		reference, hop float64
		want           float64
		ok             bool
	}{
		{"three times cheaper", 15, 5, 3, true},
		{"dearer", 10, 12.5, 0.8, true},
		{"hop lost in the noise", 15, -0.2, 0, false},
		{"hop zero", 15, 0, 0, false},
		{"reference negative", -1, 5, 0, false},
		{"NaN", math.NaN(), 5, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := HopRatio(tc.reference, tc.hop)
			if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("HopRatio(%v, %v) = %v, %v; want %v, %v", tc.reference, tc.hop, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{-1, 7, 2}, 2},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("Median sorted its input: %v", tc.in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestFlat(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want bool
	}{
		{"within 15 %", []float64{10, 11.4, 8.6}, true},
		{"16 % up", []float64{10, 11.6}, false},
		{"16 % down", []float64{10, 9, 8.4}, false},
		{"one value", []float64{10}, true},
		{"none", nil, false},
		{"first not positive", []float64{0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Flat(tc.in, 0.15); got != tc.want {
				t.Errorf("Flat(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestProcessHopUS(t *testing.T) {
	withCPU := func(r *Report, received int64, bench, server float64) *Report {
		r.Directions[0].Received = received
		r.Bench = &SUTStats{CPUSeconds: bench}
		if server >= 0 {
			r.SUT = &SUTStats{CPUSeconds: server}
		}
		return r
	}
	for _, tc := range []struct {
		name            string
		through, direct *Report
		want            float64
		wantErr         bool
	}{
		// (1.2 + 0.6) s / 100,000 = 18 µs; 1.0 s / 100,000 = 10 µs
		{"bench and server minus bench", withCPU(turnRun("", 100, 160, 20000, 1), 100000, 1.2, 0.6),
			withCPU(turnRun(ModeDirect, 100, 160, 20000, 1), 100000, 1.0, -1), 8, false},
		{"per round trip each", withCPU(turnRun("", 100, 160, 20000, 1), 50000, 0.5, 0.4),
			withCPU(turnRun(ModeDirect, 100, 160, 20000, 1), 100000, 1.0, -1), 8, false},
		{"no server CPU", withCPU(turnRun("", 100, 160, 20000, 1), 100000, 1.2, -1),
			withCPU(turnRun(ModeDirect, 100, 160, 20000, 1), 100000, 1.0, -1), 0, true},
		{"nothing came back", withCPU(turnRun("", 100, 160, 20000, 1), 0, 1.2, 0.6),
			withCPU(turnRun(ModeDirect, 100, 160, 20000, 1), 100000, 1.0, -1), 0, true},
		{"other scenario", withCPU(turnRun("", 1000, 160, 20000, 1), 100000, 1.2, 0.6),
			withCPU(turnRun(ModeDirect, 100, 160, 20000, 1), 100000, 1.0, -1), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProcessHopUS(tc.through, tc.direct)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("process hop %.3f µs, want %.3f", got, tc.want)
			}
		})
	}
}
