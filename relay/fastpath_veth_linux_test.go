package relay

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestFastPathRelayAcrossVeth runs the relay with fast_path: on between
// two namespaces it makes, as at an edge: pion clients in one, reaching
// listeners on the relay's link to them, echo peers in the other, reached
// from relay addresses on a second link; IPv4 and IPv6 allocations at
// once. The daemon picks the interfaces to attach to by itself; every
// channel enters the kernel, every round trip comes back intact, and what
// the kernel counted is what the peers got.
func TestFastPathRelayAcrossVeth(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	relayNS, in, others := sideNetns(t, 2)
	clientNS, peerNS := others[0], others[1]
	ip := netip.MustParseAddr
	type side struct {
		ns         netns.NsHandle
		link       string
		addrs, via [2]netip.Addr
	}
	sides := []side{
		{relayNS, "r0", [2]netip.Addr{ip("192.0.2.1"), ip("2001:db8:1::1")}, [2]netip.Addr{}},
		{clientNS, "c0", [2]netip.Addr{ip("192.0.2.2"), ip("2001:db8:1::2")}, [2]netip.Addr{ip("192.0.2.1"), ip("2001:db8:1::1")}},
		{relayNS, "r1", [2]netip.Addr{ip("198.51.100.1"), ip("2001:db8:2::1")}, [2]netip.Addr{}},
		{peerNS, "p0", [2]netip.Addr{ip("198.51.100.2"), ip("2001:db8:2::2")}, [2]netip.Addr{ip("198.51.100.1"), ip("2001:db8:2::1")}},
	}
	for _, pair := range [][2]int{{0, 1}, {2, 3}} {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: sides[pair[0]].link}, PeerName: sides[pair[1]].link, PeerNamespace: netlink.NsFd(sides[pair[1]].ns)}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatalf("veth: %v", err)
		}
	}
	for _, s := range sides {
		in(s.ns)
		lk, err := netlink.LinkByName(s.link)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range s.addrs {
			bits := map[bool]int{true: 24, false: 64}[a.Is4()]
			ad := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}, Flags: unix.IFA_F_NODAD}
			if err := netlink.AddrAdd(lk, ad); err != nil {
				t.Fatal(err)
			}
			if err := netlink.LinkSetUp(lk); err != nil {
				t.Fatal(err)
			}
			if gw := s.via[i]; gw.IsValid() {
				if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	in(relayNS)

	cfg := baseConfig(t)
	cfg.FastPath = FastPathOn
	cfg.Listeners = []ListenerConfig{
		{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.AddrPortFrom(sides[0].addrs[0], 0)}},
		{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.AddrPortFrom(sides[0].addrs[1], 0)}},
	}
	cfg.RelayIP, cfg.RelayIPv6 = sides[2].addrs[0].String(), sides[2].addrs[1].String()
	cfg.AllowedPeers = []config.Prefix{
		{Prefix: netip.MustParsePrefix("198.51.100.0/24")}, {Prefix: netip.MustParsePrefix("2001:db8:2::/64")},
	}
	r := startRelay(t, cfg)
	if r.fast == nil {
		t.Fatal("fast_path: on started without the fast path")
	}
	const peers, rounds = 3, 30
	type leg struct {
		conn   net.PacketConn // the allocation's relayed conn
		echoes []*countingEcho
	}
	var legs []leg
	for fam := range 2 {
		var server netip.AddrPort
		for _, a := range r.UDPAddrs() {
			if a.Addr().Is4() == (fam == 0) {
				server = a
			}
		}
		in(clientNS)
		conn, err := net.ListenPacket("udp", netip.AddrPortFrom(sides[1].addrs[fam], 0).String())
		in(relayNS)
		if err != nil {
			t.Fatal(err)
		}
		c, err := turn.NewClient(&turn.ClientConfig{
			STUNServerAddr: server.String(), TURNServerAddr: server.String(), Conn: conn,
			Username: testUser, Password: testPass, Realm: testRealm,
			LoggerFactory: quietLogs{}, RTO: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Close()
			conn.Close()
		})
		rc, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate over %v: %v", server, err)
		}
		t.Cleanup(func() { rc.Close() })
		l := leg{conn: rc}
		in(peerNS)
		for range peers {
			l.echoes = append(l.echoes, newCountingEchoOn(t, sides[3].addrs[fam]))
		}
		in(relayNS)
		legs = append(legs, l)
	}
	testutil.WaitFor(t, "every channel in the kernel", 10*time.Second, func() bool {
		for _, l := range legs {
			for _, e := range l.echoes {
				roundTrip(t, l.conn, e.conn.LocalAddr(), []byte("warm-up"))
			}
		}
		return r.fastEntries() == len(legs)*peers && r.fastWarm(t)
	})
	base := fastCounters(t, r)
	var warm uint64
	for _, l := range legs {
		for _, e := range l.echoes {
			warm += e.packets.Load()
		}
	}
	buf := make([]byte, 2048)
	var sentBytes uint64
	for round := range rounds {
		for li, l := range legs {
			msgs := map[string][]byte{}
			for pi, e := range l.echoes {
				msg := fmt.Appendf(nil, "leg %d peer %d round %d %s", li, pi, round, make([]byte, (round*53+pi*7)%1300))
				msgs[e.conn.LocalAddr().String()] = msg
				sentBytes += uint64(len(msg))
				if _, err := l.conn.WriteTo(msg, e.conn.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			for range l.echoes {
				_ = l.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := l.conn.ReadFrom(buf)
				if err != nil {
					t.Fatalf("leg %d round %d: %v (%d replies missing)", li, round, err, len(msgs))
				}
				if want, ok := msgs[from.String()]; !ok || string(buf[:n]) != string(want) {
					t.Fatalf("leg %d round %d: unexpected %d bytes from %v", li, round, n, from)
				}
				delete(msgs, from.String())
			}
		}
	}
	got := fastCounters(t, r)
	want := uint64(len(legs) * peers * rounds)
	if got.toPeerPackets-base.toPeerPackets != want || got.toClientPackets-base.toClientPackets != want ||
		got.toPeerBytes-base.toPeerBytes != sentBytes || got.toClientBytes-base.toClientBytes != sentBytes {
		t.Errorf("kernel counters %+v (before the rounds %+v), want %d packets and %d bytes more each way", got, base, want, sentBytes)
	}
	var peerGot uint64
	for _, l := range legs {
		for _, e := range l.echoes {
			peerGot += e.packets.Load()
		}
	}
	if peerGot-warm != want {
		t.Errorf("peers got %d datagrams after warm-up, want %d", peerGot-warm, want)
	}
}

// sideNetns makes n network namespaces beside the test's own, each with lo
// up, and returns the test's own with in, which moves the test's thread
// into one of them. The goroutine stays locked to its thread until the
// test ends, when the thread is back in its own namespace and the others
// are closed.
func sideNetns(t *testing.T, n int) (own netns.NsHandle, in func(netns.NsHandle), side []netns.NsHandle) {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	own, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { own.Close() })
	in = func(ns netns.NsHandle) {
		t.Helper()
		if err := netns.Set(ns); err != nil {
			t.Fatalf("setns: %v", err)
		}
	}
	t.Cleanup(func() { in(own) })
	for range n {
		h, err := netns.New() // and switch this thread to it
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		lo, _ := netlink.LinkByName("lo")
		_ = netlink.LinkSetUp(lo)
		side = append(side, h)
	}
	in(own)
	return own, in, side
}
