package fastpath

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestForwarderFollowsMark is split tunnelling through the fast path: in
// the relay's namespace the main table blackholes the peer, and only
// packets carrying the relay's mark (0x42) find it, through a rule to a
// table that sends it out of a second link [r2] <-> [p2]. An entry with
// the mark is forwarded that way, both ways, IPv4 and IPv6 (user space
// resolved the egress with the mark, and bpf_redirect_neigh's own route
// lookup used skb->mark); an entry without it is refused, as user space
// would be refused sending there.
func TestForwarderFollowsMark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: kernel test needs root (netns, veth, CAP_BPF)")
	}
	defer goleak.VerifyNone(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lab := newLab(t)
	via := lab.addSecondLink()
	lab.in(lab.relay)
	r2 := lab.ifindex("r2")
	for fam, peer := range lab.peerIP {
		family := map[bool]int{true: unix.AF_INET, false: unix.AF_INET6}[peer.Is4()]
		rule := netlink.NewRule()
		rule.Family, rule.Mark, rule.Table = family, 0x42, 100
		if err := netlink.RuleAdd(rule); err != nil {
			t.Fatalf("ip rule fwmark 0x42 lookup 100: %v", err)
		}
		host := &net.IPNet{IP: peer.AsSlice(), Mask: net.CIDRMask(peer.BitLen(), peer.BitLen())}
		if err := netlink.RouteAdd(&netlink.Route{Dst: host, Gw: via[fam].AsSlice(), LinkIndex: r2, Table: 100}); err != nil {
			t.Fatalf("route to %s via %s in table 100: %v", peer, via[fam], err)
		}
		if err := netlink.RouteAdd(&netlink.Route{Dst: host, Type: unix.RTN_BLACKHOLE}); err != nil {
			t.Fatalf("blackhole %s: %v", peer, err)
		}
	}
	fw, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer fw.Close()
	for _, name := range []string{"lo", "r0", "r1", "r2"} {
		if err := fw.Attach(lab.ifindex(name)); err != nil {
			t.Fatalf("Attach %s: %v", name, err)
		}
	}
	for fam, famName := range []string{"ipv4", "ipv6"} {
		t.Run(famName, func(t *testing.T) {
			outer := lab.t
			lab.t = t
			defer func() { lab.t = outer }()
			before := lab.p2Packets()
			sent := lab.roundTrips(t, fw, fam, false) // entries carry mark 0x42
			if got := lab.p2Packets() - before; got < sent {
				t.Errorf("p2 received %d packets, want at least the %d datagrams to the peer", got, sent)
			}
			lab.in(lab.relay)
			e := Entry{
				Client: netip.AddrPortFrom(lab.clientIP[fam], 40000), Listener: netip.AddrPortFrom(lab.listenIP[fam], 3478),
				Relay: netip.AddrPortFrom(lab.relayIP[fam], 50000), Peer: netip.AddrPortFrom(lab.peerIP[fam], 6000),
				Channel: 0x4000,
			}
			if err := fw.Add(e); !errors.Is(err, ErrNoRoute) {
				t.Errorf("an entry without the mark toward a peer only the mark routes to: %v, want ErrNoRoute", err)
			}
		})
	}
}

// TestForwarderFollowsRouteChanges changes the relay's route to the peer
// while a channel is in the kernel, and the forwarder follows by itself
// (it watches routing messages): a host route through the second link
// moves the datagrams there; a blackhole sends them to user space (the
// relay's listener gets the ChannelData, the peer nothing); removing it
// brings the first link back.
func TestForwarderFollowsRouteChanges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: kernel test needs root (netns, veth, CAP_BPF)")
	}
	defer goleak.VerifyNone(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lab := newLab(t)
	via := lab.addSecondLink()
	lab.in(lab.relay)
	fw, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer fw.Close()
	for _, name := range []string{"lo", "r0", "r1", "r2"} {
		if err := fw.Attach(lab.ifindex(name)); err != nil {
			t.Fatalf("Attach %s: %v", name, err)
		}
	}
	r1, r2 := uint32(lab.ifindex("r1")), uint32(lab.ifindex("r2"))
	for fam, famName := range []string{"ipv4", "ipv6"} {
		t.Run(famName, func(t *testing.T) {
			outer := lab.t
			lab.t = t
			defer func() { lab.t = outer }()
			open := func(ns netns.NsHandle, a netip.Addr) *net.UDPConn {
				lab.in(ns)
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			client, listener := open(lab.client, lab.clientIP[fam]), open(lab.relay, lab.listenIP[fam])
			relay := open(lab.relay, lab.relayIP[fam])
			peer := &countingConn{conn: open(lab.peer, lab.peerIP[fam])}
			done := make(chan struct{})
			go peer.echo(done)
			defer func() {
				for _, c := range []*net.UDPConn{client, listener, relay, peer.conn} {
					c.Close()
				}
				<-done
			}()
			e := Entry{Client: addrPort(client), Listener: addrPort(listener), Relay: addrPort(relay), Peer: addrPort(peer.conn), Channel: 0x5000}
			lab.in(lab.relay)
			if err := fw.Add(e); err != nil {
				t.Fatal(err)
			}
			defer func() { _, _ = fw.Remove(e) }()
			buf := make([]byte, 2048)
			roundTrip := func(what string) {
				t.Helper()
				msg := channelData(e.Channel, []byte(what))
				if _, err := client.WriteToUDPAddrPort(msg, e.Listener); err != nil {
					t.Fatal(err)
				}
				_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := client.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[4:n]) != what {
					t.Fatalf("%s: got %q, %v", what, buf[:n], err)
				}
			}
			oif := func() uint32 {
				fw.mu.Lock()
				defer fw.mu.Unlock()
				return fw.routes[e.toPeer()].oif
			}
			waitOif := func(want uint32) {
				t.Helper()
				if _, ok := testutil.Poll(5*time.Second, func() bool { return oif() == want }); !ok {
					t.Fatalf("the peer's interface is %d, want %d (a route change not followed)", oif(), want)
				}
			}
			waitOif(r1)
			roundTrip("via r1")

			host := &net.IPNet{IP: lab.peerIP[fam].AsSlice(), Mask: net.CIDRMask(lab.peerIP[fam].BitLen(), lab.peerIP[fam].BitLen())}
			viaR2 := &netlink.Route{Dst: host, Gw: via[fam].AsSlice(), LinkIndex: int(r2)}
			lab.in(lab.relay)
			if err := netlink.RouteAdd(viaR2); err != nil {
				t.Fatal(err)
			}
			waitOif(r2)
			before := lab.p2Packets()
			roundTrip("via r2")
			if lab.p2Packets() == before {
				t.Error("the datagram did not come in on p2 after the route moved to r2")
			}

			lab.in(lab.relay)
			if err := netlink.RouteDel(viaR2); err != nil {
				t.Fatal(err)
			}
			blackhole := &netlink.Route{Dst: host, Type: unix.RTN_BLACKHOLE}
			if err := netlink.RouteAdd(blackhole); err != nil {
				t.Fatal(err)
			}
			waitOif(0)
			got := peer.packets.Load()
			msg := channelData(e.Channel, []byte("no route"))
			if _, err := client.WriteToUDPAddrPort(msg, e.Listener); err != nil {
				t.Fatal(err)
			}
			_ = listener.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _, err := listener.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != string(msg) {
				t.Fatalf("with the peer blackholed the relay's listener got %x, %v; want the ChannelData for user space", buf[:n], err)
			}
			if peer.packets.Load() != got {
				t.Error("the peer got a datagram through a blackhole route")
			}

			lab.in(lab.relay)
			if err := netlink.RouteDel(blackhole); err != nil {
				t.Fatal(err)
			}
			waitOif(r1)
			roundTrip("via r1 again")
		})
	}
}
