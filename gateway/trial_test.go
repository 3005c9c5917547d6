package gateway

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
)

// trialRig is a shared socket with n sessions waiting to latch on its
// internal leg, wired to a worker without sockets: handle is called
// directly.
type trialRig struct {
	*bench
	pending []*leg
	keys    []string // the pending legs' peer keys
}

func newTrialRig(tb testing.TB, n int) *trialRig {
	tb.Helper()
	r := &trialRig{bench: newBench(tb, suiteAES128SHA80, suiteAES128SHA80, false)}
	for i := 0; i < n; i++ {
		r.addPending(tb)
	}
	return r
}

// addPending adds a session whose internal leg waits to latch on the
// shared socket, as addSession does.
func (r *trialRig) addPending(tb testing.TB) *srtp.Context {
	tb.Helper()
	line := newKeyLine(tb, suiteAES128SHA80)
	c, err := ParseCrypto(line)
	if err != nil {
		tb.Fatal(err)
	}
	s := &session{id: fmt.Sprint("p", len(r.pending)), w: r.w}
	peer := &r.s.legs[legCloud]
	for id := range s.legs {
		s.legs[id] = leg{s: s, id: legID(id), mux: true, symmetric: true, rtp: peer.rtp, rtcp: peer.rtp,
			out: peer.out, remote: peer.remote}
	}
	l := &s.legs[legInternal]
	l.remote = netip.AddrPort{}
	l.rtp, l.rtcp = r.shared, r.shared
	l.in = []*keyState{newKeyState(c.Suite, c.Keys[0], 1, 256)}
	r.shared.dm.add(l)
	r.w.trial.reconsider()
	r.pending = append(r.pending, l)
	r.keys = append(r.keys, line)
	return contextFor(tb, line, false)
}

// send hands one datagram from src to the shared socket and returns
// "forwarded" or the reason it was dropped for.
func (r *trialRig) send(src netip.AddrPort, pkt []byte) string {
	buf := make([]byte, bufSize)
	n := copy(buf, pkt)
	var before [numReasons]uint64
	for i := range before {
		before[i] = r.w.stats.drops[legInternal][i].Load()
	}
	if out, _, _, _ := r.w.handle(r.shared, src, buf, n); out != nil {
		return "forwarded"
	}
	for i := range before {
		if r.w.stats.drops[legInternal][i].Load() != before[i] {
			return reason(i).String()
		}
	}
	return "not counted"
}

func junkPacket(tb testing.TB, ssrc uint32) []byte {
	tb.Helper()
	p := make([]byte, 172)
	_, _ = rand.Read(p)
	p[0], p[1] = 0x80, 0
	binary.BigEndian.PutUint32(p[8:12], ssrc)
	return p
}

// TestJunkSourceIsDeniedAndOthersStillLatch: a source whose packets no key
// authenticates is denied after denyAfter packets, each of which cost one
// pass over the waiting sessions; then its packets cost no trial and are
// counted as junk_source, while a real peer from another address latches
// with its first packet.
func TestJunkSourceIsDeniedAndOthersStillLatch(t *testing.T) {
	r := newTrialRig(t, 200)
	junk := netip.MustParseAddrPort("203.0.113.9:4000")
	for i := 0; i < denyAfter; i++ {
		if got := r.send(junk, junkPacket(t, uint32(i))); got != "unknown_flow" {
			t.Fatalf("junk packet %d dropped as %s, want unknown_flow", i, got)
		}
	}
	if d := r.w.stats.denied.Load(); d != 1 {
		t.Fatalf("denied sources = %d, want 1", d)
	}
	trials := r.w.stats.trials.Load()
	tokens := r.w.trial.tokens
	for i := 0; i < 1000; i++ {
		if got := r.send(junk, junkPacket(t, uint32(100+i))); got != "junk_source" {
			t.Fatalf("junk packet after the denial dropped as %s, want junk_source", got)
		}
	}
	if r.w.stats.trials.Load() != trials || r.w.trial.tokens != tokens {
		t.Fatal("packets of a denied source were tried")
	}
	// A real peer, another address: its first packet latches its session.
	tx := contextFor(t, r.keys[77], false)
	peer := netip.MustParseAddrPort("198.51.100.20:5004")
	if got := r.send(peer, encRTP(t, tx, rtpPacket(t, 0xabc, 1, 160))); got != "forwarded" {
		t.Fatalf("the real peer's first packet was dropped as %s", got)
	}
	if l := r.pending[77]; l.remote != peer || !l.latched {
		t.Fatalf("leg latched to %s, want %v", l.remote, peer)
	}
	// The denied source stays denied after the real peer's packet, and a
	// known flow is never subject to the deny list.
	if got := r.send(junk, junkPacket(t, 9999)); got != "junk_source" {
		t.Fatalf("junk dropped as %s, want junk_source", got)
	}
}

// TestDeniedSourceGetsProbationWhenASessionIsAdded: a peer that sent
// before its session existed is denied; once its session is added, its
// next packet is tried again and latches.
func TestDeniedSourceGetsProbationWhenASessionIsAdded(t *testing.T) {
	r := newTrialRig(t, 10)
	early := netip.MustParseAddrPort("198.51.100.30:6000")
	line := newKeyLine(t, suiteAES128SHA80)
	tx := contextFor(t, line, false)
	var pkts [][]byte
	for seq := uint16(1); seq <= denyAfter+3; seq++ {
		pkts = append(pkts, encRTP(t, tx, rtpPacket(t, 0x55, seq, 160)))
	}
	for i := 0; i < denyAfter+1; i++ {
		r.send(early, pkts[i])
	}
	if got := r.send(early, pkts[denyAfter+1]); got != "junk_source" {
		t.Fatalf("an early packet dropped as %s, want junk_source", got)
	}
	// The session arrives, with the early peer's key.
	c, err := ParseCrypto(line)
	if err != nil {
		t.Fatal(err)
	}
	r.addPending(t)
	l := r.pending[len(r.pending)-1]
	l.in = []*keyState{newKeyState(c.Suite, c.Keys[0], 1, 256)}
	if got := r.send(early, pkts[denyAfter+2]); got != "forwarded" {
		t.Fatalf("the peer's first packet after its session was added dropped as %s", got)
	}
	if l.remote != early {
		t.Fatalf("leg latched to %s, want %v", l.remote, early)
	}
}

// TestDenialExpires: after denyFor a denied source gets one packet of
// trials again, and one failure denies it again.
func TestDenialExpires(t *testing.T) {
	r := newTrialRig(t, 10)
	junk := netip.MustParseAddrPort("203.0.113.9:4000")
	for i := 0; i < denyAfter; i++ {
		r.send(junk, junkPacket(t, uint32(i)))
	}
	r.w.now += denyFor + 1
	if got := r.send(junk, junkPacket(t, 77)); got != "unknown_flow" {
		t.Fatalf("first packet after the denial expired dropped as %s, want unknown_flow (tried)", got)
	}
	if got := r.send(junk, junkPacket(t, 78)); got != "junk_source" {
		t.Fatalf("second packet dropped as %s, want junk_source", got)
	}
	if d := r.w.stats.denied.Load(); d != 2 {
		t.Fatalf("denials = %d, want 2", d)
	}
}

// TestWorkerTrialBudget: once the worker's budget is spent, packets of
// unknown flows are refused without a key check and their source is not
// blamed for it; the budget refills with time.
func TestWorkerTrialBudget(t *testing.T) {
	r := newTrialRig(t, 50)
	r.w.trial.refill(r.w.now, workerTrialRate, workerTrialBurst)
	r.w.trial.tokens = 0
	tx := contextFor(t, r.keys[3], false)
	peer := netip.MustParseAddrPort("198.51.100.20:5004")
	for i := 0; i < denyAfter+2; i++ {
		if got := r.send(peer, encRTP(t, tx, rtpPacket(t, 0xabc, uint16(i+1), 160))); got != "trial_refused" {
			t.Fatalf("packet %d dropped as %s, want trial_refused", i, got)
		}
	}
	r.w.now += int64(10 * time.Millisecond) // 1,500 checks
	if got := r.send(peer, encRTP(t, tx, rtpPacket(t, 0xabc, 100, 160))); got != "forwarded" {
		t.Fatalf("after the refill the real peer's packet dropped as %s", got)
	}
}

// TestNewStreamOfLatchedSourceIsTriedFirst: a further SSRC from a source
// that owns a flow is tried against that flow's leg first: one check.
func TestNewStreamOfLatchedSourceIsTriedFirst(t *testing.T) {
	r := newTrialRig(t, 50)
	tx := contextFor(t, r.keys[9], false)
	peer := netip.MustParseAddrPort("198.51.100.20:5004")
	if got := r.send(peer, encRTP(t, tx, rtpPacket(t, 1, 1, 160))); got != "forwarded" {
		t.Fatalf("first packet dropped as %s", got)
	}
	r.w.trial.tokens = 1
	if got := r.send(peer, encRTP(t, tx, rtpPacket(t, 2, 1, 160))); got != "forwarded" {
		t.Fatalf("a second stream of the latched source dropped as %s", got)
	}
}

// TestJunkFromLatchedAddressIsDenied: junk sent from (or spoofing) a
// latched peer's address is denied like any other source, while the
// peer's known flow keeps passing.
func TestJunkFromLatchedAddressIsDenied(t *testing.T) {
	r := newTrialRig(t, 50)
	tx := contextFor(t, r.keys[9], false)
	peer := netip.MustParseAddrPort("198.51.100.20:5004")
	if got := r.send(peer, encRTP(t, tx, rtpPacket(t, 1, 1, 160))); got != "forwarded" {
		t.Fatalf("first packet dropped as %s", got)
	}
	for i := 0; i < denyAfter; i++ {
		r.send(peer, junkPacket(t, uint32(100+i)))
	}
	trials := r.w.stats.trials.Load()
	for i := 0; i < 100; i++ {
		if got := r.send(peer, junkPacket(t, uint32(200+i))); got != "junk_source" {
			t.Fatalf("junk from the latched address dropped as %s, want junk_source", got)
		}
	}
	if r.w.stats.trials.Load() != trials {
		t.Fatal("junk from a denied latched address was tried")
	}
	if got := r.send(peer, encRTP(t, tx, rtpPacket(t, 1, 2, 160))); got != "forwarded" {
		t.Fatalf("the latched flow dropped as %s", got)
	}
}

// TestSourceTableIsBounded: a flood from ever new addresses never grows
// the table and never allocates.
func TestSourceTableIsBounded(t *testing.T) {
	tab := newSrcTable()
	n := len(tab.slots)
	a := netip.MustParseAddr("203.0.113.1")
	port := uint16(0)
	allocs := testing.AllocsPerRun(100_000, func() {
		port++
		e := tab.get(netip.AddrPortFrom(a, port), int64(port)+1)
		e.fails++
	})
	if allocs != 0 || len(tab.slots) != n {
		t.Fatalf("allocs %v, slots %d (want 0 and %d)", allocs, len(tab.slots), n)
	}
	// A source seen again finds its entry while it is among the most
	// recent of its set.
	src := netip.AddrPortFrom(a, 1)
	e := tab.get(src, 1e9)
	e.fails = 3
	if tab.get(src, 2e9).fails != 3 {
		t.Fatal("a recent source lost its entry")
	}
}

// BenchmarkJunkPacket measures the data path's cost of one RTP-shaped
// junk packet on a shared socket with 2,000 sessions waiting to latch,
// from a source already denied (the steady state of a flood): with
// BenchmarkSocketRecv it bounds the junk rate one worker absorbs.
func BenchmarkJunkPacket(b *testing.B) {
	r := newTrialRig(b, 2000)
	junk := netip.MustParseAddrPort("203.0.113.9:4000")
	const ring = 1024
	pkts := make([][]byte, ring)
	for i := range pkts {
		pkts[i] = junkPacket(b, uint32(i))
	}
	buf := make([]byte, bufSize)
	for i := 0; i < denyAfter; i++ {
		n := copy(buf, pkts[i])
		r.w.handle(r.shared, junk, buf, n)
	}
	b.SetBytes(172)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n := copy(buf, pkts[i%ring])
		if out, _, _, _ := r.w.handle(r.shared, junk, buf, n); out != nil {
			b.Fatal("junk forwarded")
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
	if r.w.stats.drops[legInternal][reasonJunkSource].Load() == 0 {
		b.Fatal("the source was not denied")
	}
}

// BenchmarkTrialCheck measures one key check of trial authentication: a
// junk packet from a new source tried against 2,000 sessions waiting to
// latch, per check. It sizes workerTrialRate (about 0.5 µs a check: the
// budget is under a tenth of a core). A failed check allocates inside
// pion/srtp (a provisional per-SSRC replay state, dropped when the tag
// does not verify): garbage bounded by the trial budgets, which is why a
// denied source costs no check at all.
func BenchmarkTrialCheck(b *testing.B) {
	r := newTrialRig(b, 2000)
	pkt := junkPacket(b, 1)
	buf := make([]byte, bufSize)
	a := netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	checks := 0
	port := uint16(0)
	for b.Loop() {
		port++
		r.w.trial.tokens = 1 << 20
		n := copy(buf, pkt)
		r.w.handle(r.shared, netip.AddrPortFrom(a, port), buf, n)
		checks += len(r.pending)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(checks), "ns/check")
}

// TestSSRCOverLimitCountsOnItsLeg: a latched peer's stream beyond the
// leg's SSRC limit is dropped and counted on that leg as ssrc_limit.
func TestSSRCOverLimitCountsOnItsLeg(t *testing.T) {
	r := newTrialRig(t, 1)
	tx := contextFor(t, r.keys[0], false)
	peer := netip.MustParseAddrPort("198.51.100.20:5004")
	max := r.w.cfg.MaxSSRCs
	for ssrc := 1; ssrc <= max; ssrc++ {
		if got := r.send(peer, encRTP(t, tx, rtpPacket(t, uint32(ssrc), 1, 160))); got != "forwarded" {
			t.Fatalf("stream %d of %d dropped as %s", ssrc, max, got)
		}
	}
	if got := r.send(peer, encRTP(t, tx, rtpPacket(t, uint32(max+1), 1, 160))); got != "ssrc_limit" {
		t.Fatalf("stream %d dropped as %s, want ssrc_limit", max+1, got)
	}
	if n := r.pending[0].c.SSRCLimit; n != 1 {
		t.Fatalf("leg's ssrc_limit count = %d, want 1", n)
	}
}
