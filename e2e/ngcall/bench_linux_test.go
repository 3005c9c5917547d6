//go:build linux

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
)

// BenchmarkNGRoundTrips compares ng offer+answer+delete round trips of
// mediaedge and rtpengine (Debian rtpengine-daemon, userspace) in one run,
// each over its real socket with bench's ng client, one call at a time:
//
//	go test -run '^$' -bench NGRoundTrips -benchtime 1000x ./e2e/ngcall/
func BenchmarkNGRoundTrips(b *testing.B) {
	b.Run("mediaedge", func(b *testing.B) {
		cfg := ngConfig()
		cfg.NG.RatePerSource = 1_000_000
		cfg.MaxSessions = 100_000
		g := startGateway(b, cfg)
		roundTrips(b, g.NGAddr())
	})
	b.Run("rtpengine", func(b *testing.B) {
		if _, err := exec.LookPath("rtpengine"); err != nil {
			b.Skip("rtpengine is not installed (Debian package rtpengine-daemon)")
		}
		addr := freeAddr(b)
		p := startProc(b, b.TempDir(), "rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
			"--log-level=3", "--interface=127.0.0.1", "--listen-ng="+addr.String(), "--port-min=56000", "--port-max=59999", "--delete-delay=0")
		_ = p
		deadline := time.Now().Add(10 * time.Second)
		for !ngPing(addr) {
			if time.Now().After(deadline) {
				b.Fatal("rtpengine does not answer ng ping")
			}
			time.Sleep(50 * time.Millisecond)
		}
		roundTrips(b, addr)
	})
}

func roundTrips(b *testing.B, addr netip.AddrPort) {
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
	rtt := make([]time.Duration, 0, 3*b.N)
	call := func(msg map[string]any) {
		t0 := time.Now()
		if _, err := c.Call(ctx, msg); err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, time.Since(t0))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
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
