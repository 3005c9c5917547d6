package fastpath

import (
	"os"
	"testing"
	"time"
)

// BenchmarkProgram times one run of the program in the kernel per
// direction, family and payload size with BPF_PROG_TEST_RUN: the
// kernel-ns/op metric is the kernel's own measure of the program (the
// system call around it is not counted; ns/op includes it). Each run
// gets a fresh copy of the frame, since the program rewrites it.
func BenchmarkProgram(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("fastpath: running the BPF program needs root (CAP_BPF)")
	}
	fw := loadForTestRun(b)
	for _, e := range []Entry{fuzzEntry, fuzzEntry6} {
		fam := map[bool]string{true: "ipv4", false: "ipv6"}[e.Client.Addr().Is4()]
		for _, size := range []int{160, 1200} {
			payload := make([]byte, size)
			for _, dir := range []struct {
				name  string
				frame []byte
			}{
				{"to_peer", udpFrame(e.Client, e.Listener, channelData(e.Channel, payload), true)},
				{"to_client", udpFrame(e.Peer, e.Relay, payload, true)},
			} {
				b.Run(fam+"/"+dir.name+"/"+map[int]string{160: "160B", 1200: "1200B"}[size], func(b *testing.B) {
					b.SetBytes(int64(size))
					b.ReportAllocs()
					var kernel time.Duration
					for b.Loop() {
						ret, d, err := fw.objs.TurnfwdIngress.Benchmark(dir.frame, 1, nil)
						if err != nil || ret == 2 {
							b.Fatalf("run: verdict %d, %v", ret, err)
						}
						kernel += d
					}
					b.ReportMetric(float64(kernel.Nanoseconds())/float64(b.N), "kernel-ns/op")
				})
			}
		}
	}
}
