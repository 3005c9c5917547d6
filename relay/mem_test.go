package relay

import (
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
)

// BenchmarkIdleAllocationMemory reports the heap and stack held per idle
// UDP allocation (allocation, permission and channel), client side
// included: the pion clients live in the same process. The relay's own
// figure comes from the peer harness (RSS of the daemon). Set
// MEDIAEDGE_MEMPROFILE to a file to get a heap profile.
func BenchmarkIdleAllocationMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		idleAllocationMemory(b)
	}
}

func idleAllocationMemory(t *testing.B) {
	n := 300
	if v, err := strconv.Atoi(os.Getenv("MEDIAEDGE_MEM_ALLOCS")); err == nil {
		n = v
	}
	cfg := baseConfig(t)
	cfg.Limits.MaxAllocationsPerUser = 0
	r := startRelay(t, cfg)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var conns []net.PacketConn
	for i := 0; i < n; i++ {
		c := udpClient(t, r.udp, testUser, testPass)
		rc, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, rc)
		roundTrip(t, rc, peer.LocalAddr(), []byte("x"))
	}
	waitFor(t, "allocations", 5e9, func() bool { return len(r.Allocations()) == n })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if p := os.Getenv("MEDIAEDGE_MEMPROFILE"); p != "" {
		f, _ := os.Create(p)
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	t.ReportMetric(float64(int64(after.HeapInuse-before.HeapInuse)/int64(n)), "heap-B/alloc")
	t.ReportMetric(float64(int64(after.StackInuse-before.StackInuse)/int64(n)), "stack-B/alloc")
	for _, c := range conns {
		c.Close()
	}
}
