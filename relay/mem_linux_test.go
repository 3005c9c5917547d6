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
// clients are bare UDP sockets speaking STUN, so that nothing but their
// socket is on the client side; the socket's own share is measured
// separately and subtracted. MEDIAEDGE_MEM_ALLOCS sets the number (300 by
// default); MEDIAEDGE_MEMPROFILE names a file for an exact heap profile
// (every allocation sampled) of the allocations' state.
func BenchmarkIdleAllocationMemory(b *testing.B) {
	n := 300
	if v, err := strconv.Atoi(os.Getenv("MEDIAEDGE_MEM_ALLOCS")); err == nil {
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
		// Debug logs would pile up in the test's log buffer.
		r := startRelayWith(b, cfg, func(s *Server) { s.log = discardLogger() })
		peer := echoPeer(b, "udp4", "127.0.0.1:0").LocalAddr().(*net.UDPAddr).AddrPort()

		sockHeap, sockStack := memDelta(func() {
			socks := make([]*net.UDPConn, n)
			for j := range socks {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				socks[j] = c
			}
			b.Cleanup(func() {
				for _, c := range socks {
					c.Close()
				}
			})
		})
		heap, stack := memDelta(func() {
			for j := 0; j < n; j++ {
				rawChannel(b, r, peer)
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
		b.ReportMetric(float64(heap-sockHeap)/float64(n), "heap-B/alloc")
		b.ReportMetric(float64(stack-sockStack)/float64(n), "stack-B/alloc")
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
