package relay

import (
	"sync"
	"time"
)

// tokenBucket is a byte-rate limiter. Safe for concurrent use; the data
// path takes it once per datagram when a cap is configured.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per nanosecond
	burst  float64 // bytes
	tokens float64
	last   int64
}

// newBucket returns a bucket for bitrate bits/s, or nil for no cap. The
// burst is 200 ms of traffic, at least 16 KiB, so that a video key frame
// passes under a cap set to the stream's average rate.
func newBucket(bitrate int64, now int64) *tokenBucket {
	if bitrate <= 0 {
		return nil
	}
	bps := float64(bitrate) / 8
	burst := max(bps/5, 16<<10)
	return &tokenBucket{rate: bps / 1e9, burst: burst, tokens: burst, last: now}
}

func (b *tokenBucket) take(n int, now int64) bool {
	b.mu.Lock()
	if dt := now - b.last; dt > 0 {
		b.tokens = min(b.burst, b.tokens+float64(dt)*b.rate)
		b.last = now
	}
	ok := b.tokens >= float64(n)
	if ok {
		b.tokens -= float64(n)
	}
	b.mu.Unlock()
	return ok
}

// charge takes n bytes even when the bucket holds fewer tokens, and returns
// how long it takes the bucket to repay the debt (0 when there is none).
func (b *tokenBucket) charge(n int, now int64) time.Duration {
	b.mu.Lock()
	if dt := now - b.last; dt > 0 {
		b.tokens = min(b.burst, b.tokens+float64(dt)*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	var w time.Duration
	if b.tokens < 0 {
		w = time.Duration(-b.tokens / b.rate)
	}
	b.mu.Unlock()
	return w
}
