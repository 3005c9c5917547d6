package gateway

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/internal/component"
)

// bench is a session wired to a worker with no sockets, for benchmarks
// and fuzzing of the packet path: handle is called directly.
type bench struct {
	w                 *worker
	s                 *session
	intSock, intRTCP  *sock // internal leg: RTP (rtcp-mux) and a non-mux RTCP socket
	shared            *sock
	src               netip.AddrPort
	intLine, outLine  string
	intTx, cloudRx    *srtp.Context
	cloudTx           *srtp.Context
	inSuite, outSuite *Suite
}

func newBench(tb testing.TB, inSuite, outSuite *Suite, mki bool) *bench {
	tb.Helper()
	cfg := testConfig()
	g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	w := newWorker(g, 0)
	w.tick()
	b := &bench{w: w, src: netip.MustParseAddrPort("192.0.2.10:5004"), inSuite: inSuite, outSuite: outSuite}
	b.intLine = newKeyLine(tb, inSuite)
	if mki {
		b.intLine += "|2^31|1:1"
	}
	peerCloud := newKeyLine(tb, outSuite)
	plans := [2]legPlan{}
	for id, r := range []*LegRequest{
		{Crypto: b.intLine, RTCPMux: true},
		{Crypto: peerCloud, RTCPMux: true, Remote: "198.51.100.7:40000", MKI: mki},
	} {
		p, err := planLeg(legID(id).String(), r, legConfig(&cfg, legID(id)), &cfg.DTLS)
		if err != nil {
			tb.Fatal(err)
		}
		plans[id] = p
	}
	s := &session{id: "bench", w: w}
	// buildLegs binds sockets; here the legs get fake ones instead.
	for id := range s.legs {
		p := &plans[id]
		l := &s.legs[id]
		*l = leg{s: s, id: legID(id), mux: true, symmetric: true, remote: p.remote, remoteRTCP: p.remote,
			useMKI: p.mki, lifetime: p.lifetime}
		so := &sock{fd: -1, leg: legID(id), owner: l}
		l.rtp, l.rtcp = so, so
		l.inEpoch = 1
		for _, mk := range p.peer.Keys {
			l.in = append(l.in, newKeyState(p.peer.Suite, mk, 1, 256))
		}
		var m []byte
		if p.mki {
			m = mkiForEpoch(1)
		}
		out, err := generateKey(p.suite, 0, m)
		if err != nil {
			tb.Fatal(err)
		}
		l.out = newKeyState(p.suite, out, 1, 0)
	}
	b.s = s
	b.intSock = s.legs[legInternal].rtp
	b.intRTCP = &sock{fd: -1, leg: legInternal, owner: &s.legs[legInternal], rtcpOnly: true}
	b.shared = &sock{fd: -1, leg: legInternal, dm: newDemux()}
	b.shared.dm.add(&s.legs[legInternal])
	b.outLine = s.legs[legCloud].out.crypto().String()
	b.intTx = contextFor(tb, b.intLine, false)
	b.cloudTx = contextFor(tb, peerCloud, false)
	s.legs[legInternal].remote = b.src
	s.legs[legInternal].remoteRTCP = b.src
	b.cloudRx = contextFor(tb, b.outLine, true)
	w.sessions = []*session{s}
	s.added = true
	return b
}

// reset gives the legs fresh contexts (same keys), so that a benchmark can
// replay its ring of packets.
func (b *bench) reset() {
	for id := range b.s.legs {
		l := &b.s.legs[id]
		for _, k := range append(l.in, l.out) {
			k.ctx, k.rtp, k.rtcp = nil, 0, 0
			_, _ = k.context()
		}
		l.inSSRC.e, l.outSSRC.e = l.inSSRC.e[:0], l.outSSRC.e[:0]
	}
}

func TestHandleReencryptsInPlace(t *testing.T) {
	for _, mki := range []bool{false, true} {
		for _, s := range suites[:6] {
			t.Run(fmt.Sprintf("%s-mki=%v", s.Name, mki), func(t *testing.T) {
				b := newBench(t, s, suiteAES128SHA32, mki)
				for seq := uint16(1); seq < 5; seq++ {
					plain := rtpPacket(t, 7, seq, 160)
					buf := make([]byte, bufSize)
					n := copy(buf, encRTP(t, b.intTx, plain))
					out, o, dst, m := b.w.handle(b.intSock, b.src, buf, n)
					if out == nil || o != &b.s.legs[legCloud] || dst.String() != "198.51.100.7:40000" {
						t.Fatalf("packet %d not forwarded to the cloud remote (%v, %v)", seq, out, dst)
					}
					got, err := b.cloudRx.DecryptRTP(nil, buf[:m], nil)
					if err != nil || !bytes.Equal(got, plain) {
						t.Fatalf("packet %d: decrypt err %v, equal %v", seq, err, bytes.Equal(got, plain))
					}
				}
			})
		}
	}
}

// BenchmarkRekey measures the per-packet work of the data path without
// system calls: parse, authenticate and decrypt with the internal leg's
// key, re-encrypt with the cloud leg's, counters. Same suite on both legs.
func BenchmarkRekey(b *testing.B) {
	for _, s := range suites[:6] {
		for _, size := range []int{160, 1200} {
			b.Run(fmt.Sprintf("%s/%d", s.Name, size), func(b *testing.B) {
				benchRekey(b, s, s, size)
			})
		}
	}
}

// BenchmarkRekeySuiteTranslation is BenchmarkRekey between two suites.
func BenchmarkRekeySuiteTranslation(b *testing.B) {
	for _, pair := range [][2]*Suite{{suiteAES128SHA80, suiteAES128SHA32}, {suiteAES128SHA80, suiteAEAD128}, {suiteAEAD256, suiteAES256SHA80}} {
		b.Run(pair[0].Name+"-to-"+pair[1].Name, func(b *testing.B) { benchRekey(b, pair[0], pair[1], 160) })
	}
}

func benchRekey(b *testing.B, in, out *Suite, size int) {
	tb := newBench(b, in, out, false)
	const ring = 4096
	pkts := make([][]byte, ring)
	for i := range pkts {
		pkts[i] = encRTP(b, tb.intTx, rtpPacket(b, 0xbeef, uint16(i), size))
	}
	tb.reset()
	buf := make([]byte, bufSize)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == ring {
			b.StopTimer()
			tb.reset()
			i = 0
			b.StartTimer()
		}
		n := copy(buf, pkts[i])
		if o, _, _, _ := tb.w.handle(tb.intSock, tb.src, buf, n); o == nil {
			b.Fatalf("packet %d dropped", i)
		}
		i++
	}
}

// FuzzHandle feeds arbitrary datagrams to the packet path, on a dedicated
// rtcp-mux socket, a dedicated RTCP socket and a shared socket: nothing
// may panic, and a packet that is not authenticated must never be
// forwarded.
func FuzzHandle(f *testing.F) {
	seed := newBench(f, suiteAES128SHA80, suiteAEAD128, false)
	f.Add(encRTP(f, seed.intTx, rtpPacket(f, 1, 1, 160)))
	f.Add(encRTCP(f, seed.intTx, rtcpPacket(f, 1, 1)))
	f.Add(rtpPacket(f, 1, 2, 20))
	f.Add([]byte{0x80, 0xc8, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := newBench(t, suiteAES128SHA80, suiteAEAD128, len(data)%2 == 1)
		for _, s := range []*sock{b.intSock, b.intRTCP, b.shared} {
			buf := make([]byte, bufSize)
			n := copy(buf[:maxPacket+1], data)
			if out, _, _, _ := b.w.handle(s, b.src, buf, n); out != nil {
				t.Fatalf("an unauthenticated datagram was forwarded")
			}
		}
	})
}
