package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/steer"
	"github.com/mediaedge/mediaedge/internal/testutil"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// BenchmarkSocketSend measures sendRun: 32 packets to one destination,
// as UDP GSO messages or one datagram each. The receiver does not read:
// its queue overflows and the kernel drops what arrives, at the same cost
// each time.
func BenchmarkSocketSend(b *testing.B) {
	for _, gso := range []bool{false, true} {
		for _, size := range []int{160, 1200} {
			b.Run(fmt.Sprintf("gso=%v/size=%d", gso, size), func(b *testing.B) {
				w, so := socketWorker(b)
				if !gso {
					w.sys.gso.Disable()
				}
				sink := newPeer(b)
				dst := netip.MustParseAddrPort(sink.addr())
				const k = 32
				run := make([]pending, k)
				for i := range run {
					run[i] = pending{s: so, dst: dst, buf: i, n: size}
				}
				b.SetBytes(int64(size * k))
				b.ReportAllocs()
				for b.Loop() {
					w.sendRun(run)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/pkt")
				if w.stats.gsoOff.Load() {
					b.Fatal("the kernel refused UDP GSO")
				}
			})
		}
	}
}

// BenchmarkSocketRecv measures the worker's recvmmsg of 32 datagrams with
// their sizes and sources; the sender fills the socket outside the timer.
func BenchmarkSocketRecv(b *testing.B) {
	for _, size := range []int{160, 1200} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			w, so := socketWorker(b)
			src := newPeer(b)
			sc := udpbatch.New(src.conn, 32)
			const k = 32
			out := make([]udpbatch.Message, k)
			for i := range out {
				out[i] = udpbatch.Message{Buf: make([]byte, size), N: size, Addr: so.local}
			}
			b.SetBytes(int64(size * k))
			b.ReportAllocs()
			var sum int
			for b.Loop() {
				b.StopTimer()
				if _, err := sc.WriteBatch(out); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for got := 0; got < k; {
					n, _ := w.sys.rx.Recv(so.fd, w.sys.rbufs[:k-got])
					for i := 0; i < n; i++ {
						sum += w.sys.rx.Size(i)
						_ = w.sys.rx.Addr(i)
					}
					got += n
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/pkt")
			if sum == 0 {
				b.Fatal("nothing read")
			}
		})
	}
}

// BenchmarkDedicatedLegs measures the gateway's cost per packet on 1,000
// dedicated-port calls, with steering off (one epoll entry and one
// recvmmsg per datagram) and on (datagrams of all ports read in batches
// from one socket per worker). One op is one SRTP packet on each call's
// internal leg, sent in one sendmmsg burst, re-keyed by the gateway and
// received on the cloud side; ns/pkt is wall time, cpu-ns/pkt the
// process's CPU time (sender and receiver included, the same in both
// modes), wakeups/pkt and recvcalls/pkt the workers'.
func BenchmarkDedicatedLegs(b *testing.B) {
	const n = 1000
	if got := testutil.RaiseNoFile(4*n + 256); got < 4*n+256 {
		b.Skipf("RLIMIT_NOFILE %d is too low for %d calls", got, n)
	}
	for _, mode := range []SteeringMode{SteeringOff, SteeringOn} {
		b.Run("steering="+string(mode), func(b *testing.B) {
			cfg := testConfig()
			cfg.Steering = mode
			cfg.MaxSessions = n
			cfg.Internal.PortMode, cfg.Cloud.PortMode = PortsDedicated, PortsDedicated
			g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			if err := g.Start(context.Background()); err != nil {
				if errors.Is(err, steer.ErrUnsupported) {
					b.Skipf("steering cannot run here: %v", err)
				}
				b.Fatal(err)
			}
			defer g.Close()
			src, sink := newPeer(b), newPeer(b)
			_ = sink.conn.SetReadBuffer(16 << 20)
			_ = src.conn.SetWriteBuffer(16 << 20)
			txs := make([]*srtp.Context, n)
			out := make([]udpbatch.Message, n)
			plain := make([][]byte, n)
			for i := range txs {
				k := newKeyLine(b, suiteAEAD128)
				info := mustCreate(b, g, CreateRequest{
					Internal: LegRequest{Crypto: k, RTCPMux: true},
					Cloud:    LegRequest{Crypto: newKeyLine(b, suiteAEAD128), RTCPMux: true, Remote: sink.addr()},
				})
				txs[i] = contextFor(b, k, false)
				out[i] = udpbatch.Message{Buf: make([]byte, 0, 256), Addr: netip.MustParseAddrPort(info.Internal.Local)}
				plain[i] = rtpPacket(b, uint32(i+1), 0, 160)
			}
			if mode == SteeringOn && g.steer == nil {
				b.Fatal("steering on but not active")
			}
			rounds := make(chan struct{}, 1)
			go func() {
				rc := udpbatch.New(sink.conn, 64)
				msgs := make([]udpbatch.Message, 64)
				for i := range msgs {
					msgs[i].Buf = make([]byte, 2048)
				}
				got := 0
				for {
					k, err := rc.ReadBatch(msgs)
					if err != nil {
						return
					}
					if got += k; got >= n {
						got -= n
						rounds <- struct{}{}
					}
				}
			}()
			sc := udpbatch.New(src.conn, n)
			var hdr rtp.Header
			seq := uint16(0)
			timeout := time.NewTimer(time.Hour)
			defer timeout.Stop()
			round := func() {
				seq++
				for i := range out {
					p := plain[i]
					p[2], p[3] = byte(seq>>8), byte(seq)
					if _, err := hdr.Unmarshal(p); err != nil {
						b.Fatal(err)
					}
					enc, err := txs[i].EncryptRTP(out[i].Buf[:0], p, &hdr)
					if err != nil {
						b.Fatal(err)
					}
					out[i].Buf, out[i].N = enc, len(enc)
				}
				for sent := 0; sent < n; {
					k, err := sc.WriteBatch(out[sent:])
					if err != nil {
						b.Fatal(err)
					}
					sent += k
				}
				timeout.Reset(5 * time.Second)
				select {
				case <-rounds:
				case <-timeout.C:
					b.Fatalf("round %d: not every packet arrived", seq)
				}
			}
			round() // latch the internal remotes
			wake0, calls0 := workerTotals(g)
			var ru0, ru1 unix.Rusage
			_ = unix.Getrusage(unix.RUSAGE_SELF, &ru0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				round()
			}
			b.StopTimer()
			_ = unix.Getrusage(unix.RUSAGE_SELF, &ru1)
			wake1, calls1 := workerTotals(g)
			pkts := float64(b.N * n)
			cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/pkts, "ns/pkt")
			b.ReportMetric(float64(cpu.Nanoseconds())/pkts, "cpu-ns/pkt")
			b.ReportMetric(float64(wake1-wake0)/pkts, "wakeups/pkt")
			b.ReportMetric(float64(calls1-calls0)/pkts, "recvcalls/pkt")
			src.conn.Close()
			sink.conn.Close()
		})
	}
}

// workerTotals sums the workers' wake-ups and receive calls.
func workerTotals(g *Gateway) (wakeups, calls uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, w := range g.workers {
		wakeups += w.stats.wakeups.Load()
		calls += w.stats.batches.Load()
	}
	return wakeups, calls
}
