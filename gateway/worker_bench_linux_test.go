package gateway

import (
	"fmt"
	"net/netip"
	"testing"

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
