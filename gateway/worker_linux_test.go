package gateway

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// socketWorker returns a worker with its system side open and a socket of
// the cloud leg on loopback, both closed at the end of the test.
func socketWorker(tb testing.TB) (*worker, *sock) {
	tb.Helper()
	cfg := testConfig()
	cfg.Cloud.RecvBuffer = 4 << 20
	g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	w := newWorker(g, 0)
	if err := w.sys.open(64); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.sys.close)
	so, err := openSock(netip.MustParseAddr("127.0.0.1"), 0, &cfg.Cloud)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { closeFD(so.fd) })
	return w, so
}

// TestSendRunGSO: packets to one destination leave as UDP GSO messages
// and arrive as the same datagrams, in order; a shorter packet ends a
// message, a different destination starts a new one.
func TestSendRunGSO(t *testing.T) {
	w, so := socketWorker(t)
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

// TestSendRunRefused: a packet the kernel refuses (the broadcast address
// without SO_BROADCAST: EACCES) or whose destination the socket's family
// cannot reach counts as a send error of its own leg only, and the
// packets around it still go; a socket whose GSO messages the kernel
// refuses (no UDP checksums: EINVAL) turns GSO off and delivers the run
// one datagram at a time.
func TestSendRunRefused(t *testing.T) {
	for _, noCheck := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso_refused=%v", noCheck), func(t *testing.T) {
			w, so := socketWorker(t)
			if noCheck {
				if err := unix.SetsockoptInt(so.fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
					t.Skipf("SO_NO_CHECK: %v", err)
				}
			}
			p := newPeer(t)
			to := netip.MustParseAddrPort(p.addr())
			bcast := netip.MustParseAddrPort("255.255.255.255:9")
			v6 := netip.MustParseAddrPort("[2001:db8::1]:9")
			legs := make([]leg, 4)
			dsts := []netip.AddrPort{to, to, bcast, bcast, v6, to, to}
			of := []int{0, 0, 1, 1, 2, 3, 3} // leg of each packet
			var run []pending
			for i, d := range dsts {
				copy(w.sys.bufs[i], bytes.Repeat([]byte{byte(i + 1)}, 160))
				run = append(run, pending{s: so, leg: &legs[of[i]], dst: d, buf: i, n: 160})
			}
			w.sendRun(run)
			for i, want := range []uint64{0, 2, 1, 0} {
				if got := legs[i].c.SendErrors; got != want {
					t.Errorf("leg %d: %d send errors, want %d", i, got, want)
				}
			}
			for _, want := range []byte{1, 2, 6, 7} {
				d, _ := p.recv(2 * time.Second)
				if len(d) != 160 || d[0] != want {
					t.Fatalf("received %d bytes starting % x, want packet %d", len(d), d[:min(1, len(d))], want)
				}
			}
			// One refusal (EINVAL may concern one route) keeps GSO on;
			// refusals batch after batch turn it off.
			if w.stats.gsoOff.Load() || w.sys.gso.Enabled() != udpbatch.GSOSupported() {
				t.Fatalf("GSO off after one run")
			}
			for i := 0; i < 32 && !w.stats.gsoOff.Load(); i++ {
				w.sendRun(run)
			}
			if off := w.stats.gsoOff.Load(); off != noCheck {
				t.Errorf("GSO off = %v after refusals in a row, want %v", off, noCheck)
			}
		})
	}
}
