package relay

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// Requests without credentials get pion's 401 challenge, which is about
// twice their size: with spoofed UDP sources the relay would be a
// reflector. The relay counts them and answers each source address at most
// limits.challenges_per_source a second (burst twice that); the rest are
// dropped unanswered and counted.

const (
	// challengeSources bounds the sources remembered; when full, sources
	// idle for challengeIdle are forgotten, and if none is, all are.
	challengeSources = 65536
	challengeIdle    = 10 * time.Second

	attrMessageIntegrity       = 0x0008
	attrMessageIntegritySHA256 = 0x001c
	typeBindingRequest         = 0x0001
)

// challengeLimiter is a token bucket per source address. Safe for
// concurrent use.
type challengeLimiter struct {
	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   int64 // nanotime of the last refill
}

// allow takes a token of src's bucket at now (nanoseconds) with rate tokens
// a second; it reports false when the bucket is empty.
func (l *challengeLimiter) allow(src netip.Addr, rate int, now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := float64(2 * rate)
	b := l.buckets[src]
	if b == nil {
		if l.buckets == nil {
			l.buckets = map[netip.Addr]*bucket{}
		}
		if len(l.buckets) >= challengeSources {
			l.expireLocked(now)
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[src] = b
	}
	b.tokens = min(burst, b.tokens+float64(now-b.last)*float64(rate)/1e9)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// expireLocked forgets idle sources, or every source if none is idle.
func (l *challengeLimiter) expireLocked(now int64) {
	for a, b := range l.buckets {
		if now-b.last > int64(challengeIdle) {
			delete(l.buckets, a)
		}
	}
	if len(l.buckets) >= challengeSources {
		clear(l.buckets)
	}
}

// unauthenticatedRequest reports whether raw (a STUN message of at least 20
// bytes) is a request other than Binding without MESSAGE-INTEGRITY, which
// pion answers with a 401 challenge. It walks the attributes within the
// datagram only.
func unauthenticatedRequest(raw []byte) bool {
	typ := binary.BigEndian.Uint16(raw[0:2])
	if typ&0x0110 != 0 || typ == typeBindingRequest {
		return false // not a request, or a Binding
	}
	end := min(len(raw), 20+int(binary.BigEndian.Uint16(raw[2:4])))
	for off := 20; off+4 <= end; {
		at := binary.BigEndian.Uint16(raw[off : off+2])
		if at == attrMessageIntegrity || at == attrMessageIntegritySHA256 {
			return false
		}
		off += 4 + (int(binary.BigEndian.Uint16(raw[off+2:off+4]))+3)&^3
	}
	return true
}

// challenge counts an unauthenticated request from src and reports whether
// it must be dropped (its source is over the rate).
func (s *Server) challenge(src netip.Addr) bool {
	rate := s.limits.Load().ChallengesPerSource
	if rate == 0 || s.challenges.allow(src, rate, s.nanotime()) {
		s.metrics.challenges.Inc()
		return false
	}
	s.metrics.challengesLimited.Inc()
	return true
}
