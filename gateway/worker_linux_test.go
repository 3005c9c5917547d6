package gateway

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/internal/component"
)

// TestSendRunGSO: packets to one destination leave as UDP GSO messages
// and arrive as the same datagrams, in order; a shorter packet ends a
// message, a different destination starts a new one.
func TestSendRunGSO(t *testing.T) {
	cfg := testConfig()
	g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorker(g, 0)
	if err := w.sys.open(32); err != nil {
		t.Fatal(err)
	}
	defer w.sys.close()
	so, err := openSock(netip.MustParseAddr("127.0.0.1"), 0, &cfg.Cloud)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(so.fd)
	a, b := newPeer(t), newPeer(t)
	dstA, dstB := netip.MustParseAddrPort(a.addr()), netip.MustParseAddrPort(b.addr())
	sizes := []int{160, 160, 160, 100, 160, 160, 200, 160}
	dsts := []netip.AddrPort{dstA, dstA, dstA, dstA, dstA, dstB, dstB, dstA}
	var run []pending
	for i, n := range sizes {
		copy(w.sys.bufs[i], bytes.Repeat([]byte{byte(i + 1)}, n))
		run = append(run, pending{s: so, dst: dsts[i], buf: i, n: n})
	}
	w.sendRun(run)
	got := map[netip.AddrPort][]string{}
	for _, p := range []*peer{a, b} {
		for {
			d, _ := p.recv(200 * time.Millisecond)
			if d == nil {
				break
			}
			got[netip.MustParseAddrPort(p.addr())] = append(got[netip.MustParseAddrPort(p.addr())], fmt.Sprintf("%d:%d", d[0], len(d)))
		}
	}
	want := map[netip.AddrPort][]string{
		dstA: {"1:160", "2:160", "3:160", "4:100", "5:160", "8:160"},
		dstB: {"6:160", "7:200"},
	}
	for _, d := range []netip.AddrPort{dstA, dstB} {
		if fmt.Sprint(got[d]) != fmt.Sprint(want[d]) {
			t.Errorf("%s received %v, want %v", d, got[d], want[d])
		}
	}
	// Messages: [1 2 3 4] [5] [6] [7] [8]: one GSO message of four.
	if w.stats.gsoOff.Load() {
		t.Skip("this kernel refused UDP GSO; the fallback delivered the packets")
	}
	if s, seg := w.stats.gsoSends.Load(), w.stats.gsoSegments.Load(); s != 1 || seg != 4 {
		t.Errorf("GSO messages %d with %d segments, want 1 with 4", s, seg)
	}
}
