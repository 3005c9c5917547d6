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
// other calls stay up (each holds four sockets: 10,000 live calls need
// `ulimit -n` above 40,000).
//
//	go test -run '^$' -bench NGOfferAnswerDelete -benchtime 2000x ./gateway/
func BenchmarkNGOfferAnswerDelete(b *testing.B) {
	for _, live := range []int{0, 2000} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) { benchNG(b, live) })
	}
}

func benchNG(b *testing.B, live int) {
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
	for i := 0; i < live; i++ {
		id := fmt.Sprintf("live-%d", i)
		if _, err := c.Call(ctx, map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": offerSDP}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Call(ctx, map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": answerSDP}); err != nil {
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
	for i := 0; i < b.N; i++ {
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
