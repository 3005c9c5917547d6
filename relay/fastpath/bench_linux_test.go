package fastpath

import (
	"net/netip"
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

// BenchmarkReadCounters reads the counters of 10,000 entries, as the
// relay does once a second: two lookups per entry, or one batched read.
func BenchmarkReadCounters(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("fastpath: loading the BPF maps needs root (CAP_BPF)")
	}
	fw, err := New()
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	defer fw.Close()
	fw.egress = func(netip.Addr, netip.Addr, uint32) (uint32, error) { return loopbackIfindex, nil }
	const n = 10000
	entries := make([]Entry, n)
	for i := range entries {
		e := fuzzEntry
		e.Client = netip.AddrPortFrom(e.Client.Addr(), uint16(10000+i))
		e.Relay = netip.AddrPortFrom(e.Relay.Addr(), uint16(20000+i))
		if err := fw.Add(e); err != nil {
			b.Fatalf("Add %d: %v", i, err)
		}
		entries[i] = e
	}
	b.Run("lookups", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, e := range entries {
				if _, err := fw.Counters(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("batched", func(b *testing.B) {
		b.ReportAllocs()
		var s Snapshot
		for b.Loop() {
			if err := fw.Snapshot(&s); err != nil {
				b.Fatal(err)
			}
			for _, e := range entries {
				if _, ok := s.Counters(e); !ok {
					b.Fatal("entry missing from the snapshot")
				}
			}
		}
	})
}
