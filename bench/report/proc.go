package report

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture, whatever the kernel's HZ.
const clockTicks = 100

// ProcSample is one reading of a process's CPU time and memory.
type ProcSample struct {
	When time.Time
	// CPU is utime+stime of all threads.
	CPU time.Duration
	// RSS is the resident set size (VmRSS) in KiB.
	RSSKiB int64
}

// ReadProc reads /proc/PID/stat and /proc/PID/status.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{When: time.Now()}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("report: reading CPU time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("report: malformed /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return s, fmt.Errorf("report: short /proc/%d/stat", pid)
	}
	// After ')': state is field 3 overall, utime 14 and stime 15.
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("report: malformed /proc/%d/stat", pid)
	}
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("report: reading memory of pid %d: %w", pid, err)
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
}

// SUTDelta computes SUTStats between two samples for packets forwarded.
func SUTDelta(pid int, a, b ProcSample, packets int64) *SUTStats {
	s := &SUTStats{PID: pid, RSSKiB: b.RSSKiB, RSSStartKiB: a.RSSKiB}
	s.CPUSeconds = (b.CPU - a.CPU).Seconds()
	if wall := b.When.Sub(a.When).Seconds(); wall > 0 {
		s.CPUPercent = 100 * s.CPUSeconds / wall
	}
	if s.CPUSeconds > 0 {
		s.PacketsPerCPUSecond = float64(packets) / s.CPUSeconds
	}
	return s
}
