package relay

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestFastPathRetriesAfterRouteChange: a channel bound while its peer has
// no route (the peer's network is behind a link the relay has no route
// through yet) is refused by the fast path and stays in user space, where
// sending fails the same way. Once the route is added, the forwarder's
// route watcher has the relay offer the channel again: it enters the
// kernel with no rebuild of the allocation's table (no request from the
// client), and every datagram across the move, through user space and
// then through the kernel, comes back byte for byte; what the kernel
// counted is what the peer got.
func TestFastPathRetriesAfterRouteChange(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	relayNS, in, side := sideNetns(t, 1)
	peerNS := side[0]

	// [relay ns] r1 198.51.100.1/24 <-> p0 198.51.100.2/24 [peer ns],
	// and the peer at 203.0.113.2 behind p0: the relay has no route to
	// 203.0.113.0/24 until the test adds one via 198.51.100.2.
	ip := netip.MustParseAddr
	relayAddr, gw, peerAddr := ip("198.51.100.1"), ip("198.51.100.2"), ip("203.0.113.2")
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "r1"}, PeerName: "p0", PeerNamespace: netlink.NsFd(peerNS)}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	addr := func(link string, a netip.Addr, bits int) {
		t.Helper()
		lk, err := netlink.LinkByName(link)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.AddrAdd(lk, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}, Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatalf("address %s on %s: %v", a, link, err)
		}
		if err := netlink.LinkSetUp(lk); err != nil {
			t.Fatal(err)
		}
	}
	addr("r1", relayAddr, 24)
	in(peerNS)
	addr("p0", gw, 24)
	addr("p0", peerAddr, 32)
	echo := newCountingEchoOn(t, peerAddr)
	in(relayNS)
	r1, err := netlink.LinkByName("r1")
	if err != nil {
		t.Fatal(err)
	}

	cfg := baseConfig(t)
	cfg.FastPath = FastPathOn
	cfg.Listeners = cfg.Listeners[:1] // UDP on 127.0.0.1
	cfg.RelayIP = relayAddr.String()
	cfg.AllowedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}
	r := startRelay(t, cfg)
	if r.fast == nil {
		t.Fatal("fast_path: on started without the fast path")
	}
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	peer := echo.conn.LocalAddr()

	// The pion client binds a channel in the background after its first
	// write to the peer; nothing reaches the peer (no route).
	testutil.WaitFor(t, "the channel to the peer to be bound", 10*time.Second, func() bool {
		if _, err := rc.WriteTo([]byte("no route yet"), peer); err != nil {
			t.Fatal(err)
		}
		return r.boundChannels(netip.MustParseAddrPort(peer.String())) == 1
	})
	time.Sleep(200 * time.Millisecond) // let anything in flight settle
	if n := r.fastEntries(); n != 0 {
		t.Fatalf("%d fast-path entries toward a peer without a route", n)
	}
	if n := echo.packets.Load(); n != 0 {
		t.Fatalf("the peer got %d datagrams before it had a route", n)
	}

	// exchange sends one datagram through the relay and checks that the
	// peer's echo comes back as sent: nothing else arrives in between.
	buf := make([]byte, 2048)
	seq := 0
	var sentBytes uint64
	exchange := func() {
		t.Helper()
		msg := fmt.Appendf(nil, "datagram %d %s", seq, bytes.Repeat([]byte{byte(seq)}, (seq*37)%900))
		seq++
		sentBytes += uint64(len(msg))
		if _, err := rc.WriteTo(msg, peer); err != nil {
			t.Fatal(err)
		}
		_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := rc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: no echo: %v", seq-1, err)
		}
		if from.String() != peer.String() || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("datagram %d: %d bytes from %v, want the %d sent to %v (lost, reordered or corrupt)", seq-1, n, from, len(msg), peer)
		}
	}

	peerNet := netip.MustParsePrefix("203.0.113.0/24")
	if err := netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: peerNet.Addr().AsSlice(), Mask: net.CIDRMask(peerNet.Bits(), 32)},
		Gw: gw.AsSlice(), LinkIndex: r1.Attrs().Index}); err != nil {
		t.Fatalf("route to 203.0.113.0/24 via %s: %v", gw, err)
	}
	added := time.Now()
	var moved time.Duration
	testutil.WaitFor(t, "the channel to enter the kernel after the route was added", 5*time.Second, func() bool {
		exchange() // through user space until the channel moves
		if r.fastEntries() == 1 && r.fastWarm(t) {
			moved = time.Since(added)
			return true
		}
		return false
	})
	t.Logf("the channel entered the kernel %v after the route was added (%d datagrams before)", moved.Round(time.Millisecond), seq)
	base := fastCounters(t, r)
	basePeer, baseBytes, baseSent := echo.packets.Load(), echo.bytes.Load(), sentBytes
	const rounds = 50
	for range rounds {
		exchange()
	}
	got := fastCounters(t, r)
	if got.toPeerPackets-base.toPeerPackets != rounds || got.toClientPackets-base.toClientPackets != rounds {
		t.Errorf("the kernel forwarded %d to the peer and %d back, want %d each way",
			got.toPeerPackets-base.toPeerPackets, got.toClientPackets-base.toClientPackets, rounds)
	}
	// The peer's own count: every datagram of the rounds exactly once.
	testutil.WaitFor(t, "the peer to count the rounds", 2*time.Second, func() bool { return echo.packets.Load()-basePeer >= rounds })
	if p, b := echo.packets.Load()-basePeer, echo.bytes.Load()-baseBytes; p != rounds || b != sentBytes-baseSent || got.toPeerBytes-base.toPeerBytes != b {
		t.Errorf("the peer got %d datagrams, %d bytes; sent %d, %d bytes; the kernel counted %d bytes", p, b, rounds, sentBytes-baseSent, got.toPeerBytes-base.toPeerBytes)
	}
}

// boundChannels counts the channels bound to peer over r's allocations.
func (r *testRelay) boundChannels(peer netip.AddrPort) int {
	r.mu.Lock()
	as := make([]*alloc, 0, len(r.allocs))
	for _, a := range r.allocs {
		as = append(as, a)
	}
	r.mu.Unlock()
	n := 0
	for _, a := range as {
		if t := a.table.Load(); t != nil {
			for _, c := range t.chans {
				if c.peer == peer {
					n++
				}
			}
		}
	}
	return n
}
