package load

import (
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		busy    int64
		cpus    int
		wantErr bool
	}{
		{"two CPUs", "cpu  100 2 30 9000 7 4 5 6 0 0\ncpu0 50 1 15 4500 3 2 2 3 0 0\ncpu1 50 1 15 4500 4 2 3 3 0 0\nintr 1 2 3\nctxt 42\n",
			100 + 2 + 30 + 4 + 5 + 6, 2, false},
		// guest and guest_nice are already in user and nice: not added.
		{"guest counted once", "cpu  10 0 0 100 0 0 0 0 7 3\ncpu0 10 0 0 100 0 0 0 0 7 3\n", 10, 1, false},
		{"iowait and idle are not busy", "cpu  0 0 0 500 400 0 0 0 0 0\n", 0, 0, false},
		{"no steal field", "cpu  1 2 3 4 5 6 7\n", 0, 0, true},
		{"no cpu line", "intr 1\nctxt 2\n", 0, 0, true},
		{"garbage field", "cpu  1 x 3 4 5 6 7 8 0 0\n", 0, 0, true},
		{"negative field", "cpu  1 -2 3 4 5 6 7 8 0 0\n", 0, 0, true},
		{"two aggregate lines", "cpu  1 2 3 4 5 6 7 8\ncpu  1 2 3 4 5 6 7 8\n", 0, 0, true},
		{"empty", "", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy, cpus, err := parseProcStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (busy != tc.busy || cpus != tc.cpus) {
				t.Errorf("busy %d cpus %d, want %d %d", busy, cpus, tc.busy, tc.cpus)
			}
		})
	}
}

func TestReadMachine(t *testing.T) {
	a, err := readMachine()
	if err != nil {
		t.Skipf("no /proc/stat here: %v", err)
	}
	if a.CPUs < 1 || a.Busy <= 0 {
		t.Fatalf("%+v", a)
	}
}

func TestMachineDelta(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := machineSample{When: t0, Busy: 10 * time.Second, CPUs: 2}
	b := machineSample{When: t0.Add(2 * time.Second), Busy: 11500 * time.Millisecond, CPUs: 2}
	m := machineDelta(a, b, 30000)
	if m.CPUSeconds != 1.5 || m.WallSeconds != 2 || m.CPUPercent != 75 || m.USPerRoundTrip != 50 || m.CPUs != 2 {
		t.Fatalf("%+v", m)
	}
	if m := machineDelta(a, b, 0); m.USPerRoundTrip != 0 {
		t.Fatalf("no round trips: %+v", m)
	}
}
