// Package gctune is the daemon's garbage collection policy: a collection
// target tighter than Go's default, and the return of freed heap pages to
// the operating system once a burst of allocation (a wave of TURN
// allocations or gateway sessions set up or torn down) is over. The packet
// paths allocate nothing, so the collector works for the control plane
// only; what the policy trades is control-plane CPU during bursts against
// resident memory while idle (docs/relay.md, "Memory per idle
// allocation").
//
// GOGC or GOMEMLIMIT in the environment hands the collector back to the
// Go runtime: the daemon then changes nothing.
package gctune

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// DefaultPercent is the daemon's collection target (GOGC) unless the
// environment sets one. The heap grows by this share of the live heap
// between collections; between bursts the Releaser returns what a burst
// left free.
const DefaultPercent = 50

// Apply sets DefaultPercent unless GOGC or GOMEMLIMIT is in the
// environment (lookup is os.LookupEnv), and reports whether it did: only
// then does the daemon run a Releaser.
func Apply(lookup func(string) (string, bool)) bool {
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} {
		if _, set := lookup(v); set {
			return false
		}
	}
	debug.SetGCPercent(DefaultPercent)
	return true
}

// Releaser watches the heap and, once the daemon goes quiet after a burst
// of allocation, collects and returns the free pages to the operating
// system (debug.FreeOSMemory). It never runs on a packet path and at most
// once per MinGap. Start it once; Close stops it and waits. Safe for
// concurrent use.
type Releaser struct {
	// set before Start, never changed
	Interval time.Duration // how often the heap is sampled
	MinGap   time.Duration // least time between two releases
	// release returns the free pages (debug.FreeOSMemory; tests count).
	release func()
	// read samples the heap (runtime/metrics; tests stand in).
	read func() Sample

	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewReleaser returns a Releaser sampling every 2 s and releasing at most
// once a minute.
func NewReleaser() *Releaser {
	return &Releaser{Interval: 2 * time.Second, MinGap: time.Minute, release: debug.FreeOSMemory, read: readSample,
		done: make(chan struct{})}
}

// Sample is what the Releaser reads of the heap.
type Sample struct {
	Allocated uint64 // bytes allocated since the process started
	Live      uint64 // live heap as of the last collection
	Resident  uint64 // heap memory held from the OS: objects (live or not), unused slots, free spans
}

// Start runs the Releaser until Close.
func (r *Releaser) Start() {
	r.wg.Add(1)
	go r.run()
}

// Close stops the Releaser and waits for it. Idempotent.
func (r *Releaser) Close() {
	r.once.Do(func() { close(r.done) })
	r.wg.Wait()
}

func (r *Releaser) run() {
	defer r.wg.Done()
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	var d decider
	d.prev = r.read()
	for {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			if d.decide(r.read(), now, r.MinGap) {
				r.release()
				// What the collection just freed is not allocation.
				d.prev = r.read()
			}
		}
	}
}

// Thresholds of decider.
const (
	// quietShare: an interval is quiet when it allocated less than
	// 1/quietShare of the live heap (at that rate a DefaultPercent target
	// would take 16 intervals to fill).
	quietShare = 32
	// excessShare and minExcess: a release is worth it when the heap holds
	// more than 1/excessShare of the live heap beyond it, and at least
	// minExcess.
	excessShare = 8
	minExcess   = 8 << 20
)

// decider is the Releaser's rule: release when the last interval was
// quiet, the heap holds enough beyond its live part to be worth a
// collection, and the last release is MinGap old.
type decider struct {
	prev Sample
	last time.Time // of the last release
}

func (d *decider) decide(s Sample, now time.Time, minGap time.Duration) bool {
	allocated := s.Allocated - d.prev.Allocated
	d.prev = s
	if allocated*quietShare > s.Live {
		return false // busy: the burst goes on, it would grow back
	}
	if s.Resident <= s.Live {
		return false
	}
	excess := s.Resident - s.Live
	if excess < minExcess || excess*excessShare < s.Live {
		return false
	}
	if !d.last.IsZero() && now.Sub(d.last) < minGap {
		return false
	}
	d.last = now
	return true
}

var sampleNames = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

func readSample() Sample {
	ms := make([]metrics.Sample, len(sampleNames))
	for i, n := range sampleNames {
		ms[i].Name = n
	}
	metrics.Read(ms)
	v := func(i int) uint64 {
		if ms[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return ms[i].Value.Uint64()
	}
	return Sample{Allocated: v(0), Live: v(1), Resident: v(2) + v(3) + v(4)}
}
