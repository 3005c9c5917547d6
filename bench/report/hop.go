package report

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrNotComparable means two TURN reports cannot be subtracted: a figure
// is missing, or they are not of the same scenario.
var ErrNotComparable = errors.New("report: runs not comparable")

// ModeDirect is Report.Mode of a run whose packets went from bench's
// sockets straight to its echo peer, without a server.
const ModeDirect = "direct"

// HopUS returns what a relay hop costs the machine per round trip, in µs:
// the machine's busy CPU per round trip through the server minus that of
// the direct path (bench's sockets straight to its echo peer) with the
// same allocations, payload size and offered rate. Both runs count every
// bench and echo cost once per round trip, so the difference is the
// server's and the kernel's work for the hop, whoever ran it. It may come
// out negative when the hop is cheaper than the noise.
func HopUS(through, direct *Report) (float64, error) {
	if err := comparable(through, direct); err != nil {
		return 0, err
	}
	tm, dm := machineUS(through), machineUS(direct)
	if tm <= 0 || dm <= 0 {
		return 0, fmt.Errorf("%w: no machine CPU per round trip (nothing came back, or /proc/stat unreadable)", ErrNotComparable)
	}
	return tm - dm, nil
}

// ProcessHopUS is HopUS counted on the processes of the run instead of
// the whole machine: bench's and the server's CPU per round trip through
// the server minus bench's on the direct path. On loopback the kernel
// delivers a datagram (and runs a TC program on it) in the softirq that
// follows the send, charged to the sending process, so this counts the
// hop's kernel work too, but not what other programs on a shared machine
// do meanwhile. It misses softirq work deferred to ksoftirqd under load.
func ProcessHopUS(through, direct *Report) (float64, error) {
	if err := comparable(through, direct); err != nil {
		return 0, err
	}
	if through.SUT == nil || through.Bench == nil || direct.Bench == nil {
		return 0, fmt.Errorf("%w: no process CPU (bench's, or the server's without --pid)", ErrNotComparable)
	}
	tr, dr := through.Directions[0].Received, direct.Directions[0].Received
	if tr <= 0 || dr <= 0 {
		return 0, fmt.Errorf("%w: no round trip came back", ErrNotComparable)
	}
	t := (through.Bench.CPUSeconds + through.SUT.CPUSeconds) * 1e6 / float64(tr)
	d := direct.Bench.CPUSeconds * 1e6 / float64(dr)
	return t - d, nil
}

// comparable checks that through and direct are one TURN scenario, one
// run through a server and one direct.
func comparable(through, direct *Report) error {
	if through == nil || direct == nil {
		return fmt.Errorf("%w: missing run", ErrNotComparable)
	}
	if direct.Mode != ModeDirect || through.Mode == ModeDirect {
		return fmt.Errorf("%w: need one run through a server and one direct run", ErrNotComparable)
	}
	if len(through.Directions) != 1 || len(direct.Directions) != 1 {
		return fmt.Errorf("%w: not TURN round-trip runs", ErrNotComparable)
	}
	t, d := &through.Directions[0], &direct.Directions[0]
	if t.Streams != d.Streams || t.PayloadBytes != d.PayloadBytes || t.OfferedPPS != d.OfferedPPS {
		return fmt.Errorf("%w: %d/%d allocations, %d/%d bytes, %.0f/%.0f round trips/s", ErrNotComparable,
			t.Streams, d.Streams, t.PayloadBytes, d.PayloadBytes, t.OfferedPPS, d.OfferedPPS)
	}
	return nil
}

func machineUS(r *Report) float64 {
	if r.Machine == nil {
		return 0
	}
	return r.Machine.USPerRoundTrip
}

// HopRatio returns how many times cheaper hop is than reference (coturn's
// hop over mediaedge's). It reports false when hop is not positive: a hop
// lost in the noise has no meaningful ratio.
func HopRatio(reference, hop float64) (float64, bool) {
	if hop <= 0 || reference <= 0 || math.IsNaN(reference) || math.IsNaN(hop) {
		return 0, false
	}
	return reference / hop, true
}

// Median returns the median of xs (the mean of the middle two for an even
// count), NaN for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Flat reports whether every value lies within ±tol (0.15 for 15 %) of
// the first one: the cost per round trip staying put as allocations grow.
func Flat(xs []float64, tol float64) bool {
	if len(xs) == 0 || xs[0] <= 0 {
		return false
	}
	for _, x := range xs[1:] {
		if math.Abs(x-xs[0]) > tol*xs[0] {
			return false
		}
	}
	return true
}
