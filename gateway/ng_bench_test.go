package gateway

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// BenchmarkNGOfferAnswerDelete measures ng round trips over the real
// socket: one op is an offer, an answer and a delete of a call (real SDP,
// two dedicated port pairs bound and freed, four keys), with the 50th
// and 99th percentile of the three round trips reported, while `live`
// other calls stay up, at most `rate` calls set up a second (0: as fast as
// one client goes). A live call on dedicated ports (with rtcp-mux) holds
// two sockets: the benchmark raises RLIMIT_NOFILE for them (past the hard
// limit when the process has CAP_SYS_RESOURCE); the live calls the limit
// cannot hold are set up on the legs' shared ports (a reload to
// `port_mode: shared` and back), so that the call table still holds
// `live` calls, and the metric `dedicated-live` says how many of them
// have their own ports. The measured calls always use dedicated ports.
//
//	go test -run '^$' -bench NGOfferAnswerDelete -benchtime 2000x ./gateway/
func BenchmarkNGOfferAnswerDelete(b *testing.B) {
	for _, c := range []struct{ live, rate int }{{0, 0}, {2000, 0}, {10000, 200}} {
		b.Run(fmt.Sprintf("live=%d/rate=%d", c.live, c.rate), func(b *testing.B) { benchNG(b, c.live, c.rate) })
	}
}

func benchNG(b *testing.B, live, rate int) {
	// Two sockets per live call, four for the call being set up, and
	// room for the gateway's own.
	dedicated := live
	if lim := testutil.RaiseNoFile(uint64(2*live + 1024)); lim < uint64(2*live+1024) {
		dedicated = int(max(lim, 1024)-1024) / 2
	}
	cfg := ngConfig()
	cfg.NG.RatePerSource = 1_000_000
	cfg.MaxSessions = 100_000
	g := startGateway(b, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ka, kb := newBenchKey(b, "AES_CM_128_HMAC_SHA1_80", 1), newBenchKey(b, "AES_CM_128_HMAC_SHA1_80", 1)
	sdp := func(port int, k ngKey) string {
		return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/SAVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n%s\r\n", port, k.CryptoLine())
	}
	offerSDP, answerSDP := sdp(30000, ka), sdp(30002, kb)
	muxOffer, muxAnswer := offerSDP+"a=rtcp-mux\r\n", answerSDP+"a=rtcp-mux\r\n"
	setMode := func(m PortMode) {
		c := *g.cfg.Load()
		c.NG.PortMode = m
		if err := g.Reload(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < live; i++ {
		if i == dedicated {
			setMode(PortsShared)
		}
		id := fmt.Sprintf("live-%d", i)
		if _, err := c.Call(ctx, map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": muxOffer}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Call(ctx, map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": muxAnswer}); err != nil {
			b.Fatal(err)
		}
	}
	if dedicated < live {
		setMode(PortsDedicated)
	}
	rtt := make([]time.Duration, 0, 3*b.N)
	call := func(msg map[string]any) {
		t0 := time.Now()
		if _, err := c.Call(ctx, msg); err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, time.Since(t0))
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if rate > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		}
		id := fmt.Sprintf("bench-%d", i)
		call(map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": offerSDP, "replace": []any{"origin"}})
		call(map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": answerSDP})
		call(map[string]any{"command": "delete", "call-id": id, "from-tag": "a"})
	}
	b.StopTimer()
	slices.Sort(rtt)
	b.ReportMetric(float64(rtt[len(rtt)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(rtt[len(rtt)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(dedicated), "dedicated-live")
}
