package relay

import (
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// BenchmarkIdleAllocationMemory reports the heap and stack the relay holds
// per idle UDP allocation (allocation, permission and channel). The
// clients are bare UDP sockets speaking STUN, each on its own loopback
// address (127.77.x.y), closed once their channel is bound: the relay
// keeps an allocation whose client went away until it expires, so what
// remains is the relay's alone, and 10,000 allocations need only 10,000
// descriptors (the relay sockets). MEDIAEDGE_MEM_ALLOCS sets the number
// (300 by default, at most 65,000); MEDIAEDGE_MEMPROFILE names a file for
// an exact heap profile (every allocation sampled) of the allocations'
// state. The RSS of the real daemon is measured over the wire (docs/relay.md,
// "Memory per idle allocation").
func BenchmarkIdleAllocationMemory(b *testing.B) {
	n := 300
	if v, err := strconv.Atoi(os.Getenv("MEDIAEDGE_MEM_ALLOCS")); err == nil && v > 0 && v <= 65000 {
		n = v
	}
	prof := os.Getenv("MEDIAEDGE_MEMPROFILE")
	if prof != "" {
		defer func(r int) { runtime.MemProfileRate = r }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	for i := 0; i < b.N; i++ {
		cfg := baseConfig(b)
		cfg.Limits.MaxAllocationsPerUser = 0
		cfg.Limits.MaxAllocations = 0
		// The 401 limiter remembers each source address (bounded, not per
		// allocation); every client here has its own.
		cfg.Limits.ChallengesPerSource = 0
		// Debug logs would pile up in the test's log buffer.
		r := startRelayWith(b, cfg, func(s *Server) { s.log = discardLogger() })
		peer := echoPeer(b, "udp4", "127.0.0.1:0").LocalAddr().(*net.UDPAddr).AddrPort()

		heap, stack := memDelta(func() {
			for j := 0; j < n; j++ {
				ip := net.IPv4(127, 77, byte(j>>8), byte(j))
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
				if err != nil {
					b.Fatal(err)
				}
				rawChannelOn(b, r, peer, c)
				c.Close()
			}
			testutil.WaitFor(b, "allocations", 5e9, func() bool { return len(r.Allocations()) == n })
		})
		if prof != "" {
			f, err := os.Create(prof)
			if err != nil {
				b.Fatal(err)
			}
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		b.ReportMetric(float64(heap)/float64(n), "heap-B/alloc")
		b.ReportMetric(float64(stack)/float64(n), "stack-B/alloc")
		b.ReportMetric(float64(heap+stack)/float64(n), "live-B/alloc")
	}
}

// memDelta returns how much the live heap and the stacks grew across f.
func memDelta(f func()) (heap, stack int64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc), int64(after.StackInuse) - int64(before.StackInuse)
}
