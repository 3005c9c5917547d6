package gctune

import (
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestApply(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool // the daemon's target applied
	}{
		{"nothing set", nil, true},
		{"GOGC set", map[string]string{"GOGC": "200"}, false},
		{"GOGC=off", map[string]string{"GOGC": "off"}, false},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, false},
		{"both", map[string]string{"GOGC": "100", "GOMEMLIMIT": "1GiB"}, false},
		{"unrelated", map[string]string{"GODEBUG": "madvdontneed=1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			if got := Apply(lookup); got != tc.want {
				t.Fatalf("Apply = %v, want %v", got, tc.want)
			}
			want := 100 // left alone
			if tc.want {
				want = DefaultPercent
			}
			if got := debug.SetGCPercent(100); got != want {
				t.Errorf("GC percent = %d, want %d", got, want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Unix(1000, 0)
	live := uint64(100 * mib)
	// prev: the sample before; s: this one.
	for _, tc := range []struct {
		name    string
		last    time.Time
		prev, s Sample
		now     time.Time
		want    bool
	}{
		{"quiet after a burst", time.Time{}, Sample{Allocated: 500 * mib}, Sample{Allocated: 501 * mib, Live: live, Resident: live + 40*mib}, t0, true},
		{"still busy", time.Time{}, Sample{Allocated: 500 * mib}, Sample{Allocated: 510 * mib, Live: live, Resident: live + 40*mib}, t0, false},
		{"little to return", time.Time{}, Sample{Allocated: 500 * mib}, Sample{Allocated: 500 * mib, Live: live, Resident: live + 10*mib}, t0, false},
		{"small heap, under minExcess", time.Time{}, Sample{}, Sample{Live: 4 * mib, Resident: 10 * mib}, t0, false},
		{"small heap, enough", time.Time{}, Sample{}, Sample{Live: 4 * mib, Resident: 14 * mib}, t0, true},
		{"released a moment ago", t0.Add(-30 * time.Second), Sample{}, Sample{Live: live, Resident: 2 * live}, t0, false},
		{"released a while ago", t0.Add(-61 * time.Second), Sample{}, Sample{Live: live, Resident: 2 * live}, t0, true},
		{"resident below live", time.Time{}, Sample{}, Sample{Live: live, Resident: live - mib}, t0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decider{prev: tc.prev, last: tc.last}
			if got := d.decide(tc.s, tc.now, time.Minute); got != tc.want {
				t.Fatalf("decide = %v, want %v", got, tc.want)
			}
			if tc.want && d.last != tc.now {
				t.Error("a release did not start a new gap")
			}
		})
	}
}

// TestReleaser: a quiet heap with room to return is released once per
// gap, and Close stops the goroutine (goleak).
func TestReleaser(t *testing.T) {
	var released atomic.Int32
	r := NewReleaser()
	r.Interval, r.MinGap = time.Millisecond, time.Hour
	r.read = func() Sample { return Sample{Allocated: 1, Live: 100 << 20, Resident: 200 << 20} }
	r.release = func() { released.Add(1) }
	r.Start()
	deadline := time.Now().Add(10 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // many more intervals, one gap
	r.Close()
	r.Close()
	if n := released.Load(); n != 1 {
		t.Fatalf("released %d times, want 1", n)
	}
}
