package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// BenchmarkIdleAllocationMemory reports the heap and stack the relay holds
// per idle UDP allocation (allocation, permission and channel), set up as
// a WebRTC client (and the peer benchmark's loadgen) does it: rawCall. The
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
				rawCall(b, r, peer, c)
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

// TestReaderStackStaysMinimal: pion runs a reader goroutine per
// allocation. After a call's setup, including a Data indication (no
// channel yet), it holds the minimal 2 KiB stack: the worker builds Data
// indications, so the reader never runs the code that would grow its stack
// to 4 KiB for good.
func TestReaderStackStaysMinimal(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes stack sizes")
	}
	const n = 200
	cfg := baseConfig(t)
	cfg.Limits.MaxAllocationsPerUser = 0
	cfg.Limits.ChallengesPerSource = 0
	r := startRelayWith(t, cfg, func(s *Server) { s.log = discardLogger() })
	peer := echoPeer(t, "udp4", "127.0.0.1:0").LocalAddr().(*net.UDPAddr).AddrPort()
	_, stack := memDelta(func() {
		for j := 0; j < n; j++ {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 78, byte(j>>8), byte(j))})
			if err != nil {
				t.Fatal(err)
			}
			rawCall(t, r, peer, c)
			c.Close()
		}
		testutil.WaitFor(t, "allocations", 5e9, func() bool { return len(r.Allocations()) == n })
	})
	// 2,048 bytes each, plus what else runs; a grown stack is 4,096.
	if per := stack / n; per > 3000 {
		t.Fatalf("goroutine stacks grew %d bytes per allocation, want about 2,048", per)
	}
}

// rawCall sets up an allocation from c the way a WebRTC client does:
// Allocate, CreatePermission, a Send indication to peer (whose echo comes
// back as a Data indication, through pion's per-allocation reader), then
// ChannelBind and a ChannelData datagram, echoed as ChannelData. Every
// path that may keep state per allocation has then run once.
func rawCall(tb testing.TB, r *testRelay, peer netip.AddrPort, c *net.UDPConn) {
	tb.Helper()
	auth := rawAllocate(tb, r, c)
	xp := xorPeer{addr: peer.Addr(), port: peer.Port()}
	m := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest),
		xp}, auth...)...)
	if code := errorCode(rawTransact(tb, c, r.udp, m)); code != 0 {
		tb.Fatalf("create permission: %d", code)
	}
	payload := []byte("memory benchmark")
	ind := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), xp,
		stun.RawAttribute{Type: stun.AttrData, Value: payload})
	rawExpect(tb, c, r.udp, ind.Raw, func(b []byte) bool {
		in := &stun.Message{Raw: b}
		return in.Decode() == nil && in.Type == stun.NewType(stun.MethodData, stun.ClassIndication)
	})
	rawBind(tb, r, peer, c, auth)
	cd := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0x4000), uint16(len(payload)))
	rawExpect(tb, c, r.udp, append(cd, payload...), func(b []byte) bool {
		return len(b) >= 4 && binary.BigEndian.Uint16(b) == 0x4000
	})
}

// rawExpect sends out on c to server until a datagram that want accepts
// comes back (five tries of 500 ms).
func rawExpect(tb testing.TB, c *net.UDPConn, server netip.AddrPort, out []byte, want func([]byte) bool) {
	tb.Helper()
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		if _, err := c.WriteToUDPAddrPort(out, server); err != nil {
			tb.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if want(buf[:n]) {
				_ = c.SetReadDeadline(time.Time{})
				return
			}
		}
	}
	tb.Fatal("no echo")
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
