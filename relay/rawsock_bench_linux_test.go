package relay

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// benchSink is a socket on loopback that never reads: its queue
// overflows and the kernel drops what arrives, at the same cost each time.
func benchSink(b *testing.B) (*net.UDPConn, netip.AddrPort) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// BenchmarkSocketSend measures a relay socket's send path: 32 datagrams
// to one destination per call, as UDP GSO messages or one datagram each.
func BenchmarkSocketSend(b *testing.B) {
	for _, gso := range []bool{false, true} {
		for _, size := range []int{160, 1200} {
			b.Run(fmt.Sprintf("gso=%v/size=%d", gso, size), func(b *testing.B) {
				fd, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), sockOpts{})
				if err != nil {
					b.Fatal(err)
				}
				s := &sockFD{fd: fd}
				defer s.close()
				_, dst := benchSink(b)
				var sw *udpbatch.GSO
				if gso {
					sw = udpbatch.NewGSO()
				}
				m := udpbatch.NewSender(readBatch, sw)
				const k = 32
				bufs, dsts := make([][]byte, k), make([]netip.AddrPort, k)
				for i := range bufs {
					bufs[i], dsts[i] = make([]byte, size), dst
				}
				b.SetBytes(int64(size * k))
				b.ReportAllocs()
				for b.Loop() {
					if f, _ := s.send(m, false, bufs, dsts); f != 0 {
						b.Fatalf("%d failed", f)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/pkt")
			})
		}
	}
}

// BenchmarkSocketRecv measures a relay socket's receive path: 32
// datagrams per recvmmsg with their lengths, truncation and sources. The
// sender fills the socket outside the timer.
func BenchmarkSocketRecv(b *testing.B) {
	for _, size := range []int{160, 1200} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			fd, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), sockOpts{buffer: 4 << 20})
			if err != nil {
				b.Fatal(err)
			}
			s := &sockFD{fd: fd}
			defer s.close()
			la, _ := udpbatch.LocalAddr(fd)
			src, _ := benchSink(b)
			sc := udpbatch.New(src, 32)
			const k = 32
			out := make([]udpbatch.Message, k)
			for i := range out {
				out[i] = udpbatch.Message{Buf: make([]byte, size), N: size, Addr: la}
			}
			m := udpbatch.NewRecvBatch(readBatch)
			bufs := make([][]byte, k)
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			ns, trunc, from := make([]int, k), make([]bool, k), make([]netip.AddrPort, k)
			b.SetBytes(int64(size * k))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				if _, err := sc.WriteBatch(out); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for got := 0; got < k; {
					got += s.recv(m, bufs[got:], ns[got:], trunc[got:], from[got:])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/pkt")
		})
	}
}
