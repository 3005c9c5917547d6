package udpbatch

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// BenchmarkAdd measures the grouping of a batch of 32 datagrams to one
// destination, without system calls.
func BenchmarkAdd(b *testing.B) {
	for _, gso := range []bool{false, true} {
		b.Run(fmt.Sprintf("gso=%v", gso), func(b *testing.B) {
			dst := netip.MustParseAddrPort("192.0.2.1:5004")
			sb := NewSendBatch(32)
			p := make([]byte, 160)
			b.ReportAllocs()
			for b.Loop() {
				sb.Reset(false, gso)
				for range 32 {
					_ = sb.Add(p, dst)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/pkt")
		})
	}
}

// BenchmarkSendAll measures building and sending 32 datagrams to one
// destination on loopback, as UDP GSO messages or one datagram each. The
// receiver does not read: its queue overflows and the kernel drops what
// arrives, at the same cost every time.
func BenchmarkSendAll(b *testing.B) {
	for _, gso := range []bool{false, true} {
		for _, size := range []int{160, 1200} {
			b.Run(fmt.Sprintf("gso=%v/size=%d", gso, size), func(b *testing.B) {
				fd, _ := rawSock(b, "127.0.0.1:0", sockopt.Options{}, false)
				_, dst := rawSock(b, "127.0.0.1:0", sockopt.Options{}, false)
				const k = 32
				p := make([]byte, size)
				sb := NewSendBatch(k)
				dropped := 0
				b.SetBytes(int64(size * k))
				b.ReportAllocs()
				for b.Loop() {
					sb.Reset(false, gso)
					for range k {
						_ = sb.Add(p, dst)
					}
					if err := sb.SendAll(fd, func(_, n int) { dropped += n }); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/pkt")
				if dropped > 0 {
					b.Fatalf("%d datagrams dropped", dropped)
				}
			})
		}
	}
}

// BenchmarkRecv measures reading 32 datagrams with one Recv; the sender
// fills the socket outside the timer.
func BenchmarkRecv(b *testing.B) {
	for _, size := range []int{160, 1200} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			const k = 32
			rfd, rl := rawSock(b, "127.0.0.1:0", sockopt.Options{RecvBuffer: 4 << 20}, false)
			sfd, _ := rawSock(b, "127.0.0.1:0", sockopt.Options{}, false)
			sb := NewSendBatch(k)
			sb.Reset(false, false)
			for range k {
				_ = sb.Add(make([]byte, size), rl)
			}
			rb := NewRecvBatch(k)
			bufs := make([][]byte, k)
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			var sum int
			b.SetBytes(int64(size * k))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				if n, err := sb.Send(sfd, 0); n != k {
					b.Fatalf("Send = %d, %v", n, err)
				}
				b.StartTimer()
				for got := 0; got < k; {
					n, _ := rb.Recv(rfd, bufs[:k-got])
					for i := 0; i < n; i++ {
						sum += rb.Size(i)
						_ = rb.Addr(i)
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
