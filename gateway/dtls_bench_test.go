package gateway

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
)

// BenchmarkDTLSHandshake measures complete DTLS-SRTP handshakes through
// the gateway: per iteration a session with a passive DTLS leg is
// created, a pion/dtls client (in this process, so that its cost counts
// too, on the same 2 cores) handshakes with it, and the session is
// deleted. "burst" starts them as fast as 2 x GOMAXPROCS clients can go;
// "paced" starts one every 5 ms (200/s, 1,000 in 5 s). Run it as
//
//	go test -run '^$' -bench BenchmarkDTLSHandshake -benchtime 1000x -benchmem ./gateway/
//
// It also reports the 99th percentile of the transit time of an
// established SDES session's packets (one every millisecond) through the
// gateway: p99-idle-µs before the handshakes start, p99-busy-µs while
// they run.
func BenchmarkDTLSHandshake(b *testing.B) {
	for _, pace := range []time.Duration{0, 5 * time.Millisecond} {
		name := "burst"
		if pace > 0 {
			name = "paced"
		}
		b.Run(name, func(b *testing.B) { benchHandshakes(b, pace) })
	}
}

func benchHandshakes(b *testing.B, pace time.Duration) {
	cfg := testConfig()
	g := startGateway(b, cfg)
	idle := transitP99(b, g, 500*time.Millisecond, nil)
	stop := make(chan struct{})
	busy := make(chan time.Duration, 1)
	go func() { busy <- transitP99(b, g, 0, stop) }()
	var tick <-chan time.Time
	if pace > 0 {
		tk := time.NewTicker(pace)
		defer tk.Stop()
		tick = tk.C
	}
	var failed atomic.Int64
	b.SetParallelism(1) // GOMAXPROCS clients at once
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		web := newDTLSPeer(b)
		for pb.Next() {
			if tick != nil {
				<-tick
			}
			info, err := g.Create(context.Background(), CreateRequest{
				Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: "active", Fingerprint: web.cert.fp.String()},
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
	close(stop)
	p99 := <-busy
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d handshakes failed", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	b.ReportMetric(float64(idle.Microseconds()), "p99-idle-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-busy-µs")
}

// transitP99 streams SRTP through an SDES-SDES session of g, one packet
// per millisecond, for d (or until stop is closed), and returns the 99th
// percentile of the time from send to receipt.
func transitP99(b *testing.B, g *Gateway, d time.Duration, stop <-chan struct{}) time.Duration {
	a, z := newPeer(b), newPeer(b)
	ka := newKeyLine(b, suiteAES128SHA80)
	info, err := g.Create(context.Background(), CreateRequest{
		Internal: LegRequest{Remote: a.addr(), RTCPMux: true, Crypto: ka},
		Cloud:    LegRequest{Remote: z.addr(), RTCPMux: true, Crypto: newKeyLine(b, suiteAES128SHA80)},
	})
	if err != nil {
		b.Error(err)
		return 0
	}
	defer func() { _ = g.Delete(context.Background(), info.ID) }()
	tx := contextFor(b, ka, false)
	dst := udpAddr(b, info.Internal.Local)
	buf := make([]byte, 2048)
	var lat []time.Duration
	end := time.Now().Add(d)
	for seq := uint16(1); ; seq++ {
		if stop == nil && time.Now().After(end) {
			break
		}
		if stop != nil {
			select {
			case <-stop:
				stop = nil
				end = time.Time{}
			default:
			}
		}
		pkt, _ := tx.EncryptRTP(nil, rtpPacket(b, 0x7777, seq, 160), nil)
		t0 := time.Now()
		if _, err := a.conn.WriteToUDP(pkt, dst); err != nil {
			b.Error(err)
			return 0
		}
		_ = z.conn.SetReadDeadline(t0.Add(time.Second))
		if _, _, err := z.conn.ReadFromUDP(buf); err == nil {
			lat = append(lat, time.Since(t0))
		}
		time.Sleep(time.Millisecond)
	}
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
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
