package load

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// benchRun builds a run with one flow whose packets the benchmarks push
// through the sender's and the receiver's per-packet code directly.
func benchRun(b *testing.B, suite string, size, n int) (*srtpRun, *stream) {
	s, err := srtpcheck.LookupSuite(suite)
	if err != nil {
		b.Fatal(err)
	}
	k, _ := srtpcheck.NewKey(s)
	opt := &SRTPOptions{Count: n, PayloadBytes: size}
	if err := opt.setDefaults(); err != nil {
		b.Fatal(err)
	}
	r, err := newSRTPRun([]Flow{{Direction: "x", TxKey: k, RxKey: k, Target: netip.MustParseAddrPort("127.0.0.1:9"), Recv: "127.0.0.1:0"}}, opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.close)
	return r, r.streams[0]
}

// BenchmarkPacketPath measures bench's own cost per packet: build and
// encrypt (sender), decrypt and verify (receiver). Both must allocate
// nothing, or the harness would measure its garbage collector.
func BenchmarkPacketPath(b *testing.B) {
	for _, suite := range []string{"AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"} {
		for _, size := range []int{160, 1200} {
			b.Run(fmt.Sprintf("send/%s/%d", suite, size), func(b *testing.B) {
				r, st := benchRun(b, suite, size, b.N)
				s := newSender(r, st.dir)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					s.add(st, i)
					s.n = 0 // drop the batch instead of sending it
				}
			})
			b.Run(fmt.Sprintf("receive/%s/%d", suite, size), func(b *testing.B) {
				const n = 4096
				r, st := benchRun(b, suite, size, n)
				s := newSender(r, st.dir)
				pkts := make([][]byte, n)
				for i := range pkts {
					s.add(st, i)
					pkts[i] = append([]byte(nil), s.msgs[0].Buf[:s.msgs[0].N]...)
					s.n = 0
				}
				var sock *benchSocket
				for _, so := range r.order {
					if so.recv {
						sock = so
					}
				}
				rc := newReceiver(r, sock)
				from := netip.MustParseAddrPort("127.0.0.1:9")
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if i%n == 0 && i > 0 {
						// Replay the same packets: reset the stream's
						// receive state so they verify again.
						b.StopTimer()
						st.tracker = newSeqTracker(n)
						st.highestExt = -1
						st.rx, _ = st.flow.RxKey.Context()
						b.StartTimer()
					}
					rc.handle(pkts[i%n], from, int64(time.Millisecond))
				}
				b.StopTimer()
				if st.failedAuth+st.badPayload != 0 {
					b.Fatalf("%d failed auth, %d bad payload", st.failedAuth, st.badPayload)
				}
			})
		}
	}
}
