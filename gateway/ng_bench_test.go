package gateway

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkNGOfferAnswerDelete measures ng round trips over the real
// socket: one op is an offer, an answer and a delete of a call (real SDP,
// two dedicated port pairs bound and freed, four keys), with the 50th
// and 99th percentile of the three round trips reported, while `live`
// other calls stay up (with rtcp-mux, two sockets each: 10,000 live calls
// need `ulimit -n` above 20,000), at most `rate` calls set up a second (0:
// as fast as one client goes).
//
//	go test -run '^$' -bench NGOfferAnswerDelete -benchtime 2000x ./gateway/
func BenchmarkNGOfferAnswerDelete(b *testing.B) {
	for _, c := range []struct{ live, rate int }{{0, 0}, {2000, 0}, {8000, 200}} {
		b.Run(fmt.Sprintf("live=%d/rate=%d", c.live, c.rate), func(b *testing.B) { benchNG(b, c.live, c.rate) })
	}
}

func benchNG(b *testing.B, live, rate int) {
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
	for i := 0; i < live; i++ {
		id := fmt.Sprintf("live-%d", i)
		if _, err := c.Call(ctx, map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": muxOffer}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Call(ctx, map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": muxAnswer}); err != nil {
			b.Fatal(err)
		}
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
}
