package gateway

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
)

// BenchmarkDTLSHandshake measures complete DTLS-SRTP handshakes through
// the gateway: per iteration a session with a passive DTLS leg is
// created, a pion/dtls client (on the same machine, so its cost counts
// too) handshakes with it, and the session is deleted. Several clients
// run at once. Run it as
//
//	go test -run '^$' -bench BenchmarkDTLSHandshake -benchtime 1000x -benchmem ./gateway/
func BenchmarkDTLSHandshake(b *testing.B) {
	cfg := testConfig()
	g := startGateway(b, cfg)
	var failed atomic.Int64
	b.SetParallelism(4) // 4 x GOMAXPROCS clients at once
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		web := newDTLSPeer(b)
		for pb.Next() {
			info, err := g.Create(context.Background(), CreateRequest{
				Internal: LegRequest{Keying: KeyingDTLS, Setup: "active", Fingerprint: web.cert.fp.String()},
				Cloud:    LegRequest{Remote: "198.51.100.7:40000", RTCPMux: true, Crypto: benchKeyLine},
			})
			if err != nil {
				failed.Add(1)
				continue
			}
			c, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 20 * time.Second})
			if err != nil {
				failed.Add(1)
			} else {
				_ = c.Close()
			}
			web.conns = web.conns[:0]
			_ = g.Delete(context.Background(), info.ID)
		}
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d handshakes failed", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

// benchKeyLine is a fixed SDES key for benchmarks.
const benchKeyLine = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"

// dtlsBenchLeg makes leg lid of b's session a DTLS leg keyed as a
// finished handshake would key it, and returns the context the DTLS peer
// protects its packets with.
func dtlsBenchLeg(tb testing.TB, bn *bench, lid legID, suite *Suite) *srtp.Context {
	tb.Helper()
	var prof *dtlsProfile
	for _, p := range dtlsProfiles {
		if p.suite == suite {
			prof = p
		}
	}
	l := &bn.s.legs[lid]
	ic, err := newICECreds()
	if err != nil {
		tb.Fatal(err)
	}
	l.ice = ic
	l.dtls = &dtlsLeg{plan: &dtlsPlan{role: DTLSPassive, profiles: []*dtlsProfile{prof}}, handshakes: 1}
	for _, k := range l.in {
		k.wipe()
	}
	l.in, l.inHint = nil, nil
	local, err := generateKey(suite, 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	peer, err := generateKey(suite, 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tx, err := srtp.CreateContext(append([]byte(nil), peer.Key...), append([]byte(nil), peer.Salt...), suite.Profile)
	if err != nil {
		tb.Fatal(err)
	}
	bn.w.installDTLSKeys(l, &dtlsResult{profile: prof, local: local, peer: peer})
	return tx
}

// BenchmarkDTLSPath compares the per-packet work of a DTLS-SDES session
// with an SDES-SDES one of the same suites: after the handshake a DTLS
// leg is the same SRTP path (plus the first-byte check), 0 allocs/op.
// "from-dtls": the packet arrives on the DTLS leg; "to-dtls": it leaves
// on it. pkts per CPU-second = 1e9 / (ns/op).
//
//	go test -run '^$' -bench BenchmarkDTLSPath -benchmem ./gateway/
func BenchmarkDTLSPath(b *testing.B) {
	for _, suite := range []*Suite{suiteAES128SHA80, suiteAEAD128} {
		for _, dir := range []string{"from-dtls", "to-dtls"} {
			for _, keying := range []string{KeyingSDES, KeyingDTLS} {
				b.Run(fmt.Sprintf("%s/%s/%s/160", suite.Name, dir, keying), func(b *testing.B) {
					bn := newBench(b, suite, suite, false)
					if keying == KeyingDTLS {
						if dir == "from-dtls" {
							bn.intTx = dtlsBenchLeg(b, bn, legInternal, suite)
						} else {
							dtlsBenchLeg(b, bn, legCloud, suite)
						}
					}
					const ring = 4096
					pkts := make([][]byte, ring)
					for i := range pkts {
						pkts[i] = encRTP(b, bn.intTx, rtpPacket(b, 0xbeef, uint16(i), 160))
					}
					bn.reset()
					buf := make([]byte, bufSize)
					b.SetBytes(160)
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if i == ring {
							b.StopTimer()
							bn.reset()
							i = 0
							b.StartTimer()
						}
						n := copy(buf, pkts[i])
						if o, _, _, _ := bn.w.handle(bn.intSock, bn.src, buf, n); o == nil {
							b.Fatalf("packet %d dropped", i)
						}
						i++
					}
				})
			}
		}
	}
}
