package ngcall

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// BenchmarkNGRoundTrips compares ng offer+answer+delete round trips of
// mediaedge and rtpengine (Debian rtpengine-daemon, userspace) in one run,
// each over its real socket with bench's ng client, one call at a time:
//
//	go test -run '^$' -bench NGRoundTrips -benchtime 1000x ./e2e/ngcall/
func BenchmarkNGRoundTrips(b *testing.B) { benchBoth(b, 0, 0) }

// BenchmarkNGRoundTripsLoaded is BenchmarkNGRoundTrips with 4,000 other
// calls up on each (answered, with rtcp-mux) and at most 200 calls set up
// a second. 4,000 is what rtpengine holds under a 20,000 open-files limit
// (four sockets a call, rtcp-mux or not); the benchmark raises
// RLIMIT_NOFILE toward what the calls need first, which rtpengine
// inherits:
//
//	go test -run '^$' -bench NGRoundTripsLoaded -benchtime 2000x ./e2e/ngcall/
func BenchmarkNGRoundTripsLoaded(b *testing.B) {
	const live = 4000
	if lim := testutil.RaiseNoFile(4*live + 2048); lim < 4*live+2048 {
		b.Skipf("%d live calls need %d open files; the limit is %d", live, 4*live+2048, lim)
	}
	benchBoth(b, live, 200)
}

func benchBoth(b *testing.B, live, rate int) {
	b.Run("mediaedge", func(b *testing.B) {
		cfg := ngConfig()
		cfg.NG.RatePerSource = 1_000_000
		cfg.MaxSessions = 100_000
		g := startGateway(b, cfg)
		roundTrips(b, g.NGAddr(), live, rate)
	})
	b.Run("rtpengine", func(b *testing.B) {
		if _, err := exec.LookPath("rtpengine"); err != nil {
			b.Skip("rtpengine is not installed (Debian package rtpengine-daemon)")
		}
		addr := freeAddr(b)
		p := startProc(b, b.TempDir(), "rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
			"--log-level=3", "--interface=127.0.0.1", "--listen-ng="+addr.String(), "--port-min=40000", "--port-max=59999", "--delete-delay=0")
		_ = p
		deadline := time.Now().Add(10 * time.Second)
		for !ngPing(addr) {
			if time.Now().After(deadline) {
				b.Fatal("rtpengine does not answer ng ping")
			}
			time.Sleep(50 * time.Millisecond)
		}
		roundTrips(b, addr, live, rate)
	})
}

// roundTrips measures offer+answer+delete round trips against the ng
// server at addr with live other calls up, at most rate calls a second
// (0: as fast as one client goes).
func roundTrips(b *testing.B, addr netip.AddrPort, live, rate int) {
	c, err := sut.DialNG(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s80, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	ka, _ := srtpcheck.NewKey(s80)
	kb, _ := srtpcheck.NewKey(s80)
	sdp := func(port int, k srtpcheck.Key) string {
		return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/SAVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n%s\r\n", port, k.CryptoLine())
	}
	offerSDP, answerSDP := sdp(30000, ka), sdp(30002, kb)
	for i := 0; i < live; i++ {
		id := fmt.Sprintf("live-%d-%d", b.N, i)
		for _, m := range []map[string]any{
			{"command": "offer", "call-id": id, "from-tag": "a", "sdp": offerSDP + "a=rtcp-mux\r\n", "transport-protocol": "RTP/SAVP"},
			{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": answerSDP + "a=rtcp-mux\r\n", "transport-protocol": "RTP/SAVP"},
		} {
			if r, err := c.Call(ctx, m); err != nil || r["result"] != "ok" {
				b.Fatalf("live call %d: %v %v", i, r, err)
			}
		}
	}
	if live > 0 {
		defer func() {
			for i := 0; i < live; i++ {
				_, _ = c.Call(ctx, map[string]any{"command": "delete", "call-id": fmt.Sprintf("live-%d-%d", b.N, i), "from-tag": "a"})
			}
		}()
	}
	rtt := make([]time.Duration, 0, 3*b.N)
	call := func(msg map[string]any) {
		t0 := time.Now()
		if _, err := c.Call(ctx, msg); err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, time.Since(t0))
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if rate > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		}
		id := fmt.Sprintf("rt-%d-%d", b.N, i)
		call(map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": offerSDP, "transport-protocol": "RTP/SAVP"})
		call(map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": answerSDP, "transport-protocol": "RTP/SAVP"})
		call(map[string]any{"command": "delete", "call-id": id, "from-tag": "a"})
	}
	b.StopTimer()
	slices.Sort(rtt)
	b.ReportMetric(float64(rtt[len(rtt)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(rtt[len(rtt)*99/100].Microseconds()), "p99-µs")
}
