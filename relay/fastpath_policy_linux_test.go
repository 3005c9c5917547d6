package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/vishvananda/netlink"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
	"github.com/mediaedge/mediaedge/relay/fastpath"
)

// sink counts the datagrams that reach one address.
type sink struct {
	conn *net.UDPConn
	got  atomic.Uint64
}

// newSink listens on ap; it returns nil when the address cannot be bound
// here (multicast, broadcast, unspecified, link-local without a zone).
func newSink(t *testing.T, ap netip.AddrPort) *sink {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil
	}
	s := &sink{conn: c}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			s.got.Add(1)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return s
}

// channelData is a ChannelData message on channel ch carrying p.
func channelData(ch uint16, p []byte) []byte {
	b := make([]byte, 4+len(p))
	binary.BigEndian.PutUint16(b[0:2], ch)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(p)))
	copy(b[4:], p)
	return b
}

// TestFastPathRefusesBypassForms runs the 43 bypass forms of
// TestPeerPolicyThroughRelay against a relay with fast_path: on, in a
// network namespace whose loopback holds every form's address that a host
// can hold, with a receiver on each. Every form is refused (403) for
// CreatePermission and ChannelBind; ChannelData on the refused channels is
// then sent, before and after an admitted control peer's channel enters the
// kernel on an IPv4 and on an IPv6 allocation and its ChannelData arrives
// through it. No denied peer is ever in
// the kernel's maps and no receiver of a denied form gets anything.
func TestFastPathRefusesBypassForms(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	const peerPort = 9999
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addLo := func(a netip.Addr) {
		bits := 32
		if a.Is6() {
			bits = 128
		}
		ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}
		// No duplicate address detection: a tentative address cannot be bound.
		err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: ipn, Flags: syscall.IFA_F_NODAD})
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			t.Logf("address %s not added to lo: %v", a, err)
		}
	}
	// The target of a form is where a relay that honoured it would send:
	// the literal for IPv6 forms (a NAT64 or 6to4 gateway would translate
	// further), the IPv4 address for IPv4-mapped ones.
	sinks := make([]*sink, len(bypassForms))
	byAddr := map[netip.Addr]*sink{}
	bound := 0
	for i, tc := range bypassForms {
		a := netip.MustParseAddr(tc.addr).Unmap()
		if a.IsUnspecified() || a.IsMulticast() {
			continue // a wildcard receiver would shadow the others
		}
		if _, ok := byAddr[a]; !ok {
			addLo(a)
			byAddr[a] = newSink(t, netip.AddrPortFrom(a, peerPort))
		}
		if sinks[i] = byAddr[a]; sinks[i] != nil {
			bound++
		} else {
			t.Logf("no receiver for %s (%s)", tc.name, a)
		}
	}
	// 0.0.0.0, ::, the two multicast groups and fe80::1 (no zone) get
	// none; every other form does.
	if bound < len(bypassForms)-5 {
		t.Fatalf("only %d of %d bypass forms got a receiver", bound, len(bypassForms))
	}
	t.Logf("%d of %d bypass forms have a receiver on lo", bound, len(bypassForms))
	// One admitted control peer per family: their channels enter the
	// kernel, on an IPv4 and an IPv6 allocation.
	controls := [2]netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.200:9999"),
		netip.MustParseAddrPort("[2001:db8:ffff::200]:9999"),
	}
	var controlSinks [2]*sink
	for i, c := range controls {
		addLo(c.Addr())
		if controlSinks[i] = newSink(t, c); controlSinks[i] == nil {
			t.Fatalf("cannot listen on the control peer %s", c)
		}
	}

	cfg := baseConfig(t)
	cfg.FastPath = FastPathOn
	cfg.AllowedPeers = []config.Prefix{
		{Prefix: netip.MustParsePrefix("192.0.2.128/25")},
		{Prefix: netip.MustParsePrefix("2001:db8:ffff::/48")},
	}
	cfg.RelayIPv6 = "::1"
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("[::1]:0")}})
	r := startRelay(t, cfg)
	if r.fast == nil {
		t.Fatal("fast_path: on started without the fast path")
	}
	type client struct {
		c      *turn.Client
		conn   net.PacketConn
		server netip.AddrPort
	}
	clients := map[bool]*client{}
	get := func(v6 bool) *client {
		if c := clients[v6]; c != nil {
			return c
		}
		srv := r.udp
		if v6 {
			srv = r.UDPAddrs()[1]
		}
		c, conn := udpClientConn(t, srv, testUser, testPass)
		rc, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate (ipv6=%v): %v", v6, err)
		}
		t.Cleanup(func() { rc.Close() })
		clients[v6] = &client{c: c, conn: conn, server: srv}
		return clients[v6]
	}
	bind := func(ca *client, peer xorPeer, ch uint16) (perm, chbind int) {
		m := authedRequest(t, ca.c, ca.server, testUser, testPass, stun.MethodCreatePermission, peer)
		perm = errorCode(m)
		m = authedRequest(t, ca.c, ca.server, testUser, testPass, stun.MethodChannelBind, channelNumber(ch), peer)
		return perm, errorCode(m)
	}
	kernelPeers := func() []netip.AddrPort {
		ps, err := r.fast.Peers()
		if err != nil {
			t.Fatalf("listing the kernel's entries: %v", err)
		}
		return ps
	}

	type refused struct {
		ca *client
		ch uint16
	}
	var denied []refused
	for i, tc := range bypassForms {
		a := netip.MustParseAddr(tc.addr)
		ca := get(!a.Unmap().Is4())
		ch := uint16(0x4000 + i)
		if p, b := bind(ca, xorPeer{addr: a, port: peerPort}, ch); p != 403 || b != 403 {
			t.Errorf("%s (%s): CreatePermission %d, ChannelBind %d, want 403 and 403", tc.name, tc.addr, p, b)
		}
		denied = append(denied, refused{ca: ca, ch: ch})
	}
	sendDenied := func(round int) {
		for _, d := range denied {
			msg := channelData(d.ch, fmt.Appendf(nil, "denied form, round %d", round))
			if _, err := d.ca.conn.WriteTo(msg, net.UDPAddrFromAddrPort(d.ca.server)); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendDenied(0)
	if ps := kernelPeers(); len(ps) != 0 {
		t.Fatalf("the kernel holds entries for refused peers: %v", ps)
	}

	// The controls: an admitted peer's channel enters the kernel on each
	// allocation and its ChannelData arrives through it, so the same path
	// would have carried a denied form's.
	const controlCh = 0x7000
	for i, c := range controls {
		ca := get(i == 1)
		if p, b := bind(ca, xorPeer{addr: c.Addr(), port: c.Port()}, controlCh); p != 0 || b != 0 {
			t.Fatalf("control peer %s: CreatePermission %d, ChannelBind %d, want success", c, p, b)
		}
	}
	testutil.WaitFor(t, "the control channels in the kernel", 5*time.Second, func() bool {
		return r.fastEntries() == len(controls)
	})
	sendDenied(1)
	const controlPackets = 20
	for i := range controls {
		ca := get(i == 1)
		for range controlPackets {
			if _, err := ca.conn.WriteTo(channelData(controlCh, []byte("control")), net.UDPAddrFromAddrPort(ca.server)); err != nil {
				t.Fatal(err)
			}
		}
	}
	sendDenied(2)
	for i, c := range controls {
		testutil.WaitFor(t, "the control peer's datagrams at "+c.String(), 5*time.Second, func() bool {
			return controlSinks[i].got.Load() == controlPackets
		})
		cs, err := r.fast.Counters(r.fastEntryOf(t, c))
		if err != nil {
			t.Fatal(err)
		}
		if cs.ToPeerPackets != controlPackets {
			t.Errorf("the kernel forwarded %d of the %d datagrams to %v", cs.ToPeerPackets, controlPackets, c)
		}
	}
	for _, p := range kernelPeers() {
		if p != controls[0] && p != controls[1] {
			t.Errorf("the kernel holds an entry for %v, want only the control peers %v", p, controls)
		}
	}
	// Whatever a denied form was sent went out before the control's last
	// datagram, on the same loopback; give stragglers a generous moment.
	time.Sleep(300 * time.Millisecond)
	for i, s := range sinks {
		if s != nil && s.got.Load() != 0 {
			t.Errorf("%s (%s) received %d datagrams", bypassForms[i].name, bypassForms[i].addr, s.got.Load())
		}
	}
}

// fastEntryOf returns the kernel entry whose peer is peer.
func (r *testRelay) fastEntryOf(t *testing.T, peer netip.AddrPort) (e fastpath.Entry) {
	t.Helper()
	r.mu.Lock()
	as := make([]*alloc, 0, len(r.allocs))
	for _, a := range r.allocs {
		as = append(as, a)
	}
	r.mu.Unlock()
	for _, a := range as {
		a.mu.Lock()
		for _, fe := range a.fast {
			if fe.e.Peer == peer {
				e = fe.e
			}
		}
		a.mu.Unlock()
	}
	if e.Peer != peer {
		t.Fatalf("no kernel entry for %v", peer)
	}
	return e
}
