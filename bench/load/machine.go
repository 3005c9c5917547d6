package load

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/mediaedge/mediaedge/bench/report"
)

// machineSample is one reading of the whole machine's busy CPU time.
type machineSample struct {
	When time.Time
	// Busy is user+nice+system+irq+softirq+steal summed over all CPUs.
	Busy time.Duration
	// CPUs is the number of cpuN lines.
	CPUs int
}

// readMachine reads /proc/stat.
func readMachine() (machineSample, error) {
	s := machineSample{When: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, fmt.Errorf("load: reading machine CPU time: %w", err)
	}
	ticks, cpus, err := parseProcStat(b)
	if err != nil {
		return s, err
	}
	s.Busy, s.CPUs = time.Duration(ticks)*time.Second/clockTicks, cpus
	return s, nil
}

// procStatBusy are the fields of /proc/stat's "cpu" line counted as busy,
// 0-based after the label: user nice system (idle iowait) irq softirq
// steal. Kernel work done in softirq context (loopback delivery, a BPF
// program at TC) is charged to whichever task was running, or to softirq
// when none was: only the machine-wide sum counts it whoever ran it. guest
// and guest_nice are already part of user and nice.
var procStatBusy = [...]int{0, 1, 2, 5, 6, 7}

// parseProcStat returns the busy ticks (USER_HZ) of the aggregate "cpu"
// line of /proc/stat and the number of per-CPU lines.
func parseProcStat(b []byte) (busy int64, cpus int, err error) {
	agg := false
	for _, ln := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(ln)
		if len(f) == 0 || !bytes.HasPrefix(f[0], []byte("cpu")) {
			continue
		}
		if len(f[0]) > 3 {
			cpus++
			continue
		}
		if agg {
			return 0, 0, fmt.Errorf("load: /proc/stat has two aggregate cpu lines")
		}
		// Kernels before 2.6.11 have no steal field: too old to matter,
		// but a short line is an error rather than a wrong figure.
		if len(f)-1 < procStatBusy[len(procStatBusy)-1]+1 {
			return 0, 0, fmt.Errorf("load: short cpu line in /proc/stat: %d fields", len(f)-1)
		}
		for _, i := range procStatBusy {
			v, err := strconv.ParseInt(string(f[1+i]), 10, 64)
			if err != nil || v < 0 {
				return 0, 0, fmt.Errorf("load: malformed cpu line in /proc/stat: field %d %q", i+1, f[1+i])
			}
			busy += v
		}
		agg = true
	}
	if !agg {
		return 0, 0, fmt.Errorf("load: no cpu line in /proc/stat")
	}
	return busy, cpus, nil
}

// machineDelta computes report.MachineStats between two samples for
// roundTrips verified round trips.
func machineDelta(a, b machineSample, roundTrips int64) *report.MachineStats {
	m := &report.MachineStats{CPUs: b.CPUs, CPUSeconds: (b.Busy - a.Busy).Seconds()}
	if wall := b.When.Sub(a.When).Seconds(); wall > 0 {
		m.WallSeconds = wall
		m.CPUPercent = 100 * m.CPUSeconds / wall
	}
	if roundTrips > 0 {
		m.USPerRoundTrip = m.CPUSeconds * 1e6 / float64(roundTrips)
	}
	return m
}
