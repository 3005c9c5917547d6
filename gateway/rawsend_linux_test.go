package gateway

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// rawSent sums the packets g's workers sent through their raw sockets.
func rawSent(g *Gateway) uint64 {
	var n uint64
	for _, w := range g.workers {
		n += w.stats.rawSends.Load()
	}
	return n
}

// TestRawSendFromDedicatedPorts: with dedicated ports, packets that leave
// their socket alone go through the raw socket, from the leg's own address
// and port, and arrive intact both ways.
func TestRawSendFromDedicatedPorts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raw sending needs CAP_NET_RAW: run as root")
	}
	if found, err := ipv4PortRules(); found || err != nil {
		t.Skipf("an ip rule of this namespace selects on protocol or ports (%v): raw sending pauses", err)
	}
	cfg := testConfig()
	cfg.Internal.PortMode, cfg.Cloud.PortMode = PortsDedicated, PortsDedicated
	g := startGateway(t, cfg)
	c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA32, false)
	c.exchange(t, 5, 0x5151)
	// One more, to look at its source: the cloud leg's RTP port.
	tx := contextFor(t, c.kInt, false)
	c.intRTP.send(c.info.Internal.Local, encRTP(t, tx, rtpPacket(t, 0x5151, 6, 160)))
	if b, from := c.cloudRTP.recv(2 * time.Second); b == nil || from.String() != c.info.Cloud.Local {
		t.Fatalf("packet from %s, want from the cloud leg's %s", from, c.info.Cloud.Local)
	}
	// The exchange sent 5+1+1 packets each way, one at a time.
	if n := rawSent(g); n < 12 {
		t.Errorf("%d packets sent raw, want at least 12 of 15", n)
	}
	info := mustShow(t, g, c.info.ID)
	if e := info.Internal.Counters.SendErrors + info.Cloud.Counters.SendErrors; e != 0 {
		t.Errorf("%d send errors", e)
	}
}

// TestRawSendTooLongForRoute: the kernel refuses a raw packet longer than
// its route's MTU (it does not fragment them); that datagram goes through
// its socket instead, which fragments it as UDP does, and so do the longer
// ones after it. In a network namespace whose lo has an MTU of 1,280.
func TestRawSendTooLongForRoute(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN for a network namespace, CAP_NET_RAW)")
	}
	var (
		w    *worker
		so   *sock
		peer *peer
	)
	testutil.InNetns(t, func(lo netlink.Link) {
		if err := netlink.LinkSetMTU(lo, 1280); err != nil {
			t.Fatal(err)
		}
		w, so = socketWorker(t)
		if err := w.sys.register(so); err != nil {
			t.Fatal(err)
		}
		peer = newPeer(t)
		// Raw sockets open on first use, in the namespace of the thread
		// that uses them: open it here.
		if !w.openRaw(so.leg) {
			t.Skip("no raw socket")
		}
	})
	dst := netip.MustParseAddrPort(peer.addr())
	sizes := []int{1200, 1260, 160, 1260} // 1,260 + 28 header bytes > 1,280
	for i, n := range sizes {
		for k := 0; k < n; k++ {
			w.sys.bufs[i][k] = byte(i + k)
		}
		w.sys.out = append(w.sys.out, pending{s: so, dst: dst, buf: i, n: n})
		w.flush() // one datagram at a time, as from different sockets
	}
	w.flushRaw()
	for i, n := range sizes {
		b, _ := peer.recv(2 * time.Second)
		want := make([]byte, n)
		for k := range want {
			want[k] = byte(i + k)
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("datagram %d: %d bytes, want %d as sent", i, len(b), n)
		}
	}
	r := &w.sys.raw[so.leg]
	if r.limit != 1259 {
		t.Errorf("raw limit %d after EMSGSIZE on 1,260 bytes, want 1259", r.limit)
	}
	if n := w.stats.rawSends.Load(); n != 2 {
		t.Errorf("%d datagrams sent raw, want 2 (1,200 and 160 bytes)", n)
	}
	if e := w.stats.drops[so.leg][reasonSendError].Load(); e != 0 {
		t.Errorf("%d send errors", e)
	}
}

// TestRawSendPausedByPortRules: while a policy-routing rule selects on
// ports (which a raw packet's route lookup cannot see), datagrams go
// through their sockets; raw sending resumes when the rule is gone.
func TestRawSendPausedByPortRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN for a network namespace, CAP_NET_RAW)")
	}
	testutil.InNetns(t, func(netlink.Link) {
		w, so := socketWorker(t)
		if err := w.sys.register(so); err != nil {
			t.Fatal(err)
		}
		peer := newPeer(t)
		if !w.openRaw(so.leg) {
			t.Skip("no raw socket")
		}
		dst := netip.MustParseAddrPort(peer.addr())
		send := func(i int) {
			t.Helper()
			w.sys.bufs[0][0] = byte(i)
			w.sys.out = append(w.sys.out, pending{s: so, dst: dst, buf: 0, n: 100})
			w.flush()
			w.flushRaw()
			if b, _ := peer.recv(2 * time.Second); len(b) != 100 || b[0] != byte(i) {
				t.Fatalf("datagram %d: %d bytes", i, len(b))
			}
		}
		send(1)
		rule := netlink.NewRule()
		rule.IPProto, rule.Dport, rule.Table = unix.IPPROTO_UDP, netlink.NewRulePortRange(40000, 40010), 100
		if err := netlink.RuleAdd(rule); err != nil {
			t.Fatalf("ip rule: %v", err)
		}
		w.checkRawRules()
		send(2)
		if err := netlink.RuleDel(rule); err != nil {
			t.Fatalf("ip rule del: %v", err)
		}
		w.checkRawRules()
		send(3)
		if n := w.stats.rawSends.Load(); n != 2 {
			t.Errorf("%d datagrams sent raw, want 2 (the first and the last)", n)
		}
	})
}

// BenchmarkSendAlone measures packets that leave their socket alone, as
// from dedicated ports: 32 packets of 160 bytes from 32 sockets, each
// queued by flush, through each socket's own sendmmsg (path=socket) or the
// raw socket's one sendmmsg at the end of the round (path=raw). The
// receiver does not read: its queue overflows and the kernel drops what
// arrives, at the same cost for both.
func BenchmarkSendAlone(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "path=socket"
		if raw {
			name = "path=raw"
		}
		b.Run(name, func(b *testing.B) {
			w, so := socketWorker(b)
			const k = 32
			socks := []*sock{so}
			for len(socks) < k {
				s, err := openSock(netip.MustParseAddr("127.0.0.1"), 0, &w.cfg.Cloud)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { closeFD(s.fd) })
				socks = append(socks, s)
			}
			if !raw {
				w.sys.raw[so.leg].off = true
			} else if !w.openRaw(so.leg) {
				b.Skip("no raw socket (needs CAP_NET_RAW)")
			}
			sink := newPeer(b)
			dst := netip.MustParseAddrPort(sink.addr())
			b.SetBytes(160 * k)
			b.ReportAllocs()
			for b.Loop() {
				for i, s := range socks {
					w.sys.out = append(w.sys.out, pending{s: s, dst: dst, buf: i, n: 160})
					w.flush()
				}
				w.flushRaw()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/pkt")
			if sent := w.stats.rawSends.Load(); (sent > 0) != raw {
				b.Fatalf("%d sent raw", sent)
			}
		})
	}
}
