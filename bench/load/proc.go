package load

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/mediaedge/mediaedge/bench/report"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture, whatever the kernel's HZ.
const clockTicks = 100

// procSample is one reading of a process's CPU time and memory.
type procSample struct {
	When time.Time
	// CPU is utime+stime of all threads.
	CPU time.Duration
	// RSS is the resident set size (VmRSS) in KiB.
	RSSKiB int64
}

// readProc reads /proc/PID/stat and /proc/PID/status.
func readProc(pid int) (procSample, error) {
	s := procSample{When: time.Now()}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("load: reading CPU time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("load: malformed /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return s, fmt.Errorf("load: short /proc/%d/stat", pid)
	}
	// After ')': state is field 3 overall, utime 14 and stime 15.
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("load: malformed /proc/%d/stat", pid)
	}
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("load: reading memory of pid %d: %w", pid, err)
	}
	for _, ln := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(ln, []byte("VmRSS:")); ok {
			if f := bytes.Fields(v); len(f) > 0 {
				s.RSSKiB, _ = strconv.ParseInt(string(f[0]), 10, 64)
			}
		}
	}
	return s, nil
}

// sutDelta computes report.SUTStats between two samples for packets forwarded.
func sutDelta(pid int, a, b procSample, packets int64) *report.SUTStats {
	s := &report.SUTStats{PID: pid, RSSKiB: b.RSSKiB, RSSStartKiB: a.RSSKiB}
	s.CPUSeconds = (b.CPU - a.CPU).Seconds()
	if wall := b.When.Sub(a.When).Seconds(); wall > 0 {
		s.CPUPercent = 100 * s.CPUSeconds / wall
	}
	if s.CPUSeconds > 0 {
		s.PacketsPerCPUSecond = float64(packets) / s.CPUSeconds
	}
	return s
}
