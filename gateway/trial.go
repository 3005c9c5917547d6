package gateway

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Trial authentication on a shared socket tries the keys of the legs that
// could own a packet of a flow seen for the first time. A key check of a
// small packet costs 0.5-1.5 µs, and with thousands of sessions waiting
// to latch one junk packet can cost thousands of checks, so trials are
// budgeted three ways:
//
//   - per worker: workerTrialRate checks per second for all its shared
//     sockets together, a fraction of its core, so that trials cannot
//     starve the packets of known flows, which never need one;
//   - per source address: srcTrialRate checks per second, with a burst
//     of one full pass over the candidates, so that one source cannot
//     take the worker's budget from the others;
//   - a source none of whose last denyAfter packets authenticated is
//     denied trials for denyFor: its packets of unknown flows are dropped
//     after one table look-up and counted as junk_source. A denied source
//     gets one packet of trials again (probation) as soon as a session is
//     added or a leg's key or remote changes, so a peer that sent before
//     its session existed is not locked out.
//
// Packets of known flows (source address and SSRC) never touch these
// budgets. A new flow from a source that already owns a flow on the
// socket is tried against that leg first, at the cost of one check.
const (
	workerTrialRate  = 150_000
	workerTrialBurst = 32_768
	srcTrialRate     = 8_192
	srcTrialBurst    = maxTrialCandidates
	denyAfter        = 4
	denyFor          = int64(10 * time.Second)
	// maxTrialCandidates bounds the keys tried for one packet.
	maxTrialCandidates = 16384
)

// The source table: srcSets sets of srcWays entries, least recently seen
// evicted first.
const (
	srcSets = 512
	srcWays = 4
)

// tokenBucket is a budget of key checks. The zero value is empty;
// refill it before use.
type tokenBucket struct {
	tokens float64
	at     int64 // monotonic ns of the last refill; 0: never
}

// refill adds what rate per second earned since the last refill, up to
// burst. A bucket refilled for the first time is full.
func (b *tokenBucket) refill(now int64, rate, burst float64) {
	if b.at == 0 {
		b.tokens = burst
	} else if now > b.at {
		b.tokens = min(burst, b.tokens+float64(now-b.at)*rate/1e9)
	}
	b.at = now
}

// trialBudget is a worker's budget of key checks for all its shared
// sockets, and the epoch that ends the deny list's verdicts. Owned by
// the worker goroutine.
type trialBudget struct {
	tokenBucket
	// epoch changes when a session is added or a leg's key or remote
	// changes: a denied source may now own a flow.
	epoch uint32
}

// reconsider gives every denied source one packet of trials again.
func (t *trialBudget) reconsider() { t.epoch++ }

// trialSource is what a shared socket remembers about a source address of
// packets of unknown flows.
type trialSource struct {
	addr   netip.AddrPort
	seen   int64 // monotonic ns of its last packet; 0: free slot
	budget tokenBucket
	// fails counts its packets in a row that no key authenticated.
	fails uint32
	// epoch is the worker's trial epoch when it was denied; deniedTill
	// ends the denial.
	epoch      uint32
	deniedTill int64
}

// denied reports whether the source's packets of unknown flows are
// dropped without a trial.
func (e *trialSource) denied(now int64, epoch uint32) bool {
	return e.fails >= denyAfter && now < e.deniedTill && e.epoch == epoch
}

// failed records a packet that no key authenticated although its trials
// were not cut short by the worker's budget; it reports whether the
// source is denied from now on.
func (e *trialSource) failed(now int64, epoch uint32) bool {
	e.fails++
	if e.fails < denyAfter {
		return false
	}
	e.deniedTill, e.epoch = now+denyFor, epoch
	return true
}

// srcTable is a bounded, set-associative table of sources. Fixed size,
// allocated once: looking up or adding a source never allocates. The
// hash is keyed with a random seed so that a sender cannot aim its
// addresses at one set.
type srcTable struct {
	seed  uint64
	slots []trialSource
}

func newSrcTable() srcTable {
	return srcTable{seed: rand.Uint64() | 1, slots: make([]trialSource, srcSets*srcWays)}
}

func (t *srcTable) set(src netip.AddrPort) []trialSource {
	a := src.Addr().As16()
	h := t.seed
	h = (h ^ binary.LittleEndian.Uint64(a[:8])) * 0x9e3779b97f4a7c15
	h = (h ^ binary.LittleEndian.Uint64(a[8:])) * 0xbf58476d1ce4e5b9
	h = (h ^ uint64(src.Port())) * 0x94d049bb133111eb
	h ^= h >> 31
	i := int(h%srcSets) * srcWays
	return t.slots[i : i+srcWays]
}

// get returns src's entry, taking the least recently seen slot of its set
// for a source seen for the first time.
func (t *srcTable) get(src netip.AddrPort, now int64) *trialSource {
	set := t.set(src)
	victim := &set[0]
	for i := range set {
		e := &set[i]
		if e.seen != 0 && e.addr == src {
			e.seen = now
			return e
		}
		if e.seen < victim.seen {
			victim = e
		}
	}
	*victim = trialSource{addr: src, seen: now}
	return victim
}
