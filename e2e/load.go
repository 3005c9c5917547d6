package e2e

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Load is how busy the machine was when a check ended: the 1-minute load
// average against the CPUs, and how late a short sleep woke up (the worst
// of a few), which is what a packet's timing on this machine suffers
// too. A FAIL line on an overloaded machine says so, because timing
// evidence (frames in flight, re-key switches, recovery times) is then
// about the machine as much as about mediaedge.
type Load struct {
	Load1 float64
	CPUs  int
	// WakeLate is how much later than asked a 1 ms sleep returned.
	WakeLate time.Duration
}

// Overload thresholds: more runnable tasks than CPUs, or a sleep that
// wakes 20 ms late (an audio frame's interval).
const maxWakeLate = 20 * time.Millisecond

// Overloaded reports whether the machine was too busy for timing evidence
// to be trusted.
func (l Load) Overloaded() bool {
	return (l.CPUs > 0 && l.Load1 > float64(l.CPUs)) || l.WakeLate > maxWakeLate
}

// String describes the load for a report line.
func (l Load) String() string {
	return fmt.Sprintf("load average %.1f on %d CPUs, a 1 ms sleep woke up to %v late",
		l.Load1, l.CPUs, l.WakeLate.Round(100*time.Microsecond))
}

// MeasureLoad reads the load average (Linux: /proc/loadavg; 0 elsewhere)
// and probes the scheduling latency with five 1 ms sleeps (a few
// milliseconds).
func MeasureLoad() Load {
	l := Load{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		l.Load1 = parseLoadavg(string(b))
	}
	for i := 0; i < 5; i++ {
		t := time.Now()
		time.Sleep(time.Millisecond)
		l.WakeLate = max(l.WakeLate, time.Since(t)-time.Millisecond)
	}
	return l
}

// parseLoadavg returns the 1-minute figure of /proc/loadavg (0 when it
// cannot be read).
func parseLoadavg(s string) float64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return v
}
