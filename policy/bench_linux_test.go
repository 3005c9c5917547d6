package policy

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mediaedge/mediaedge/internal/config"
)

// BenchmarkIdlePass measures a reconcile pass that finds nothing to do
// (the periodic re-check and every notification) on the fake kernel, by
// media set size: the cost of computing, reading, rendering and diffing.
func BenchmarkIdlePass(b *testing.B) {
	for _, n := range []int{3, 100, 1000} {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			k := newFakeKernel()
			k.uplink()
			cfg := testConfig()
			cfg.Media.Presets = nil
			for i := range n {
				cfg.Media.Prefixes = append(cfg.Media.Prefixes, config.Prefix{
					Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(i >> 8), byte(i), 0}), 24)})
			}
			m := fakeManager(b, cfg, k)
			if out := m.pass(true); out.err != nil {
				b.Fatal(out.err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if out := m.pass(false); out.err != nil || len(out.done) > 0 {
					b.Fatalf("pass: %v, %d changes", out.err, len(out.done))
				}
			}
		})
	}
}
