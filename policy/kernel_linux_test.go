package policy

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
	metest "github.com/mediaedge/mediaedge/internal/testutil"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(metest.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// kernelConfig is the edge's configuration in the topology.
func kernelConfig() Config {
	c := DefaultConfig()
	c.Mode = ModeEnforce
	c.Uplink.Interface = "wan0"
	c.Mark = 0x4d45
	return c
}

// manager starts a Manager in the edge namespace; it is closed in Cleanup.
func (tp *topo) manager(cfg Config, reg *prometheus.Registry) *Manager {
	tp.t.Helper()
	hk := defaultHooks(nsHandle{ns: tp.handle(roleEdge)})
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newManager(cfg, component.Deps{Logger: testLogger(tp.t), Registry: reg}, hk)
	if err != nil {
		tp.t.Fatal(err)
	}
	if err := m.Start(tp.t.Context()); err != nil {
		tp.t.Fatalf("start: %v", err)
	}
	tp.t.Cleanup(func() { m.Close() })
	return m
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// TestKernelSplitTunnel is the end-to-end proof on a real kernel: after
// Start, real packets from the LAN host to media leave on the uplink and
// everything else through the VPN, IPv4 and IPv6; the edge's marked
// sockets go direct except to corporate destinations, and get their
// replies despite strict rp_filter; the uplink going down and up, a rule
// and a route deleted by hand are repaired within a second; Close leaves
// the kernel's own rules as they were.
func TestKernelSplitTunnel(t *testing.T) {
	needKernel(t, true)
	tp := newTopo(t)
	edge := tp.edgeHandle()
	before := tp.ipState()

	lan4 := tp.udp(roleLAN, "udp4", "10.20.0.10:0", 0)
	lan6 := tp.udp(roleLAN, "udp6", "[fd20::10]:0", 0)
	marked4 := tp.udp(roleEdge, "udp4", "0.0.0.0:0", testMark)
	marked6 := tp.udp(roleEdge, "udp6", "[::]:0", testMark)
	plain4 := tp.udp(roleEdge, "udp4", "0.0.0.0:0", 0)
	media4 := tp.sink(roleInet, ap(mediaV4, mediaPort))
	media6 := tp.sink(roleInet, ap(mediaV6, mediaPort))
	other4 := tp.sink(roleInet, ap(otherV4, mediaPort))
	other6 := tp.sink(roleInet, ap(otherV6, mediaPort))
	corp4 := tp.sink(roleVPN, ap(corpV4, mediaPort))
	corp6 := tp.sink(roleVPN, ap(corpV6, mediaPort))

	// Without mediaedge the full tunnel takes everything: the probes can
	// tell the two paths apart.
	tp.expectVPN("before start: LAN to media", tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, lanV4), media4, lanV4)

	reg := prometheus.NewRegistry()
	m := tp.manager(kernelConfig(), reg)

	t.Run("lan media direct, the rest through the VPN", func(t *testing.T) {
		tp.expectDirect("LAN to media IPv4", tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, wanV4), media4, wanV4)
		tp.expectDirect("LAN to media IPv6", tp.probe(edge, lan6, ap(mediaV6, mediaPort), media6, wanV6), media6, wanV6)
		tp.expectVPN("LAN to other cloud IPv4", tp.probe(edge, lan4, ap(otherV4, mediaPort), other4, lanV4), other4, lanV4)
		tp.expectVPN("LAN to other cloud IPv6", tp.probe(edge, lan6, ap(otherV6, mediaPort), other6, lanV6), other6, lanV6)
		tp.expectVPN("LAN to corporate IPv4", tp.probe(edge, lan4, ap(corpV4, mediaPort), corp4, lanV4), corp4, lanV4)
	})
	t.Run("marked sockets direct except corporate", func(t *testing.T) {
		p := tp.probe(edge, marked4, ap(otherV4, mediaPort), other4, wanV4)
		tp.expectDirect("marked to other cloud IPv4", p, other4, wanV4)
		if p.replies < probeCount {
			t.Errorf("marked socket got %d of %d replies: the from-uplink rule must let them pass strict rp_filter", p.replies, probeCount)
		}
		tp.expectDirect("marked to media IPv6", tp.probe(edge, marked6, ap(mediaV6, mediaPort), media6, wanV6), media6, wanV6)
		tp.expectVPN("marked to corporate IPv4", tp.probe(edge, marked4, ap(corpV4, mediaPort), corp4, edgeVPNV4), corp4, edgeVPNV4)
		tp.expectVPN("marked to corporate IPv6", tp.probe(edge, marked6, ap(corpV6, mediaPort), corp6, edgeVPNV6), corp6, edgeVPNV6)
		tp.expectVPN("unmarked edge socket to other cloud", tp.probe(edge, plain4, ap(otherV4, mediaPort), other4, edgeVPNV4), other4, edgeVPNV4)
	})
	t.Run("check shows the kernel's choice", func(t *testing.T) {
		for _, c := range []struct {
			q    CheckQuery
			want string
		}{
			{CheckQuery{Dst: mediaV4, Src: lanV4, Iif: "lan0", Proto: unix.IPPROTO_UDP, Dport: mediaPort}, "via 198.51.100.1 dev wan0 table 100"},
			{CheckQuery{Dst: mediaV6, Proto: unix.IPPROTO_UDP, Dport: mediaPort}, "via 2001:db8:100::1 dev wan0 table 100"},
			{CheckQuery{Dst: otherV4, Mark: testMark}, "via 198.51.100.1 dev wan0 table 101 src 198.51.100.2"},
			{CheckQuery{Dst: corpV4, Mark: testMark}, "via 10.255.0.1 dev vpn0 table main"},
			{CheckQuery{Dst: otherV4}, "via 10.255.0.1 dev vpn0 table main"},
		} {
			got, err := checkIn(tp.handle(roleEdge), c.q)
			if err != nil || !strings.HasPrefix(got.String(), c.want) {
				t.Errorf("check %s = %q, %v; want %q", c.q, got, err, c.want)
			}
		}
	})
	t.Run("uplink down falls back, up restores within a second", func(t *testing.T) {
		tp.ipn(roleEdge, "link", "set", "wan0", "down")
		// Masquerade forgets the flow's NAT binding to wan0 from a work
		// queue: let the first packets settle the new path.
		media4.reset()
		metest.Poll(time.Second, func() bool {
			_, _ = lan4.WriteToUDPAddrPort([]byte("x"), ap(mediaV4, mediaPort))
			return media4.count(lanV4) > 0
		})
		tp.expectVPN("uplink down: LAN to media", tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, lanV4), media4, lanV4)
		if _, ok := metest.Poll(time.Second, func() bool { return m.FullStatus().Uplink.State == uplinkDown }); !ok {
			t.Errorf("status uplink state = %q, want down", m.FullStatus().Uplink.State)
		}
		media4.reset()
		tp.ipn(roleEdge, "link", "set", "wan0", "up")
		// The same socket, so the same 5-tuple: its conntrack entry from
		// the VPN path (no NAT) must be flushed, or it would leave the
		// uplink with its private address.
		took, ok := metest.Poll(3*time.Second, func() bool {
			_, _ = lan4.WriteToUDPAddrPort([]byte("x"), ap(mediaV4, mediaPort))
			return media4.count(wanV4) > 0
		})
		if !ok || took > time.Second {
			t.Errorf("media restored on the uplink after %v (ok %v), want within 1s; receiver saw %s", took, ok, media4.seen())
		}
		t.Logf("media restored on the uplink %v after link up; receiver saw %s", took, media4.seen())
		// The flow keeps its 5-tuple; none of it may leave with the
		// private source now (TestKernelConntrackFlush shows that it does
		// without the flush).
		p := tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, wanV4)
		tp.expectDirect("after up: the same LAN flow", p, media4, wanV4)
		if n := media4.count(lanV4); n > 0 {
			t.Errorf("%d packets reached the internet with the private source %s: stale conntrack entry", n, lanV4)
		}
		tp.expectDirect("after up: LAN to media IPv6", tp.probe(edge, lan6, ap(mediaV6, mediaPort), media6, wanV6), media6, wanV6)
		tp.expectDirect("after up: marked IPv4", tp.probe(edge, marked4, ap(otherV4, mediaPort), other4, wanV4), other4, wanV4)
	})
	t.Run("rule and route deleted by hand are restored within a second", func(t *testing.T) {
		repairs := testutil.ToFloat64(m.metrics.repairs)
		tp.ipn(roleEdge, "rule", "del", "pref", "1010")
		took, ok := metest.Poll(2*time.Second, func() bool { return strings.Contains(tp.ipn(roleEdge, "rule"), "1010:") })
		if !ok || took > time.Second {
			t.Errorf("rule 1010 restored after %v (ok %v), want within 1s", took, ok)
		}
		t.Logf("rule deleted by hand restored after %v", took)
		tp.ipn(roleEdge, "-6", "route", "del", "2603:1063::/38", "table", "100")
		took, ok = metest.Poll(2*time.Second, func() bool {
			return strings.Contains(tp.ipn(roleEdge, "-6", "route", "show", "table", "100"), "2603:1063::/38")
		})
		if !ok || took > time.Second {
			t.Errorf("route restored after %v (ok %v), want within 1s", took, ok)
		}
		t.Logf("route deleted by hand restored after %v", took)
		tp.expectDirect("after repair: LAN to media", tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, wanV4), media4, wanV4)
		// The pass publishes its counts after reading the kernel back.
		if _, ok := metest.Poll(time.Second, func() bool { return testutil.ToFloat64(m.metrics.repairs) >= repairs+2 }); !ok {
			t.Errorf("drift repairs counted %v, want at least %v", testutil.ToFloat64(m.metrics.repairs), repairs+2)
		}
		metest.Poll(time.Second, func() bool { st := m.FullStatus(); return st.LastRepair != nil && st.State == "running" })
		if st := m.FullStatus(); st.LastRepair == nil || st.State != "running" {
			t.Errorf("status after repairs: state %q detail %q, last repair %+v", st.State, st.Detail, st.LastRepair)
		}
	})
	t.Run("close removes what mediaedge owns and nothing else", func(t *testing.T) {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if after := tp.ipState(); after != before {
			t.Errorf("kernel state after close:\n%s\nwant as before start:\n%s", after, before)
		}
	})
}

// TestKernelConntrackFlush shows the pitfall the flush exists for: with
// conntrack_flush off, a LAN flow that moved to the VPN while the uplink
// was down keeps its no-NAT conntrack entry when the uplink comes back,
// and leaves the uplink with its private source address for as long as it
// keeps sending. (TestKernelSplitTunnel checks that with the flush it
// does not.)
func TestKernelConntrackFlush(t *testing.T) {
	needKernel(t, true)
	tp := newTopo(t)
	edge := tp.edgeHandle()
	lan4 := tp.udp(roleLAN, "udp4", "10.20.0.10:0", 0)
	media4 := tp.sink(roleInet, ap(mediaV4, mediaPort))
	cfg := kernelConfig()
	cfg.ConntrackFlush = false
	m := tp.manager(cfg, nil)

	tp.expectDirect("LAN to media", tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, wanV4), media4, wanV4)
	tp.ipn(roleEdge, "link", "set", "wan0", "down")
	metest.Poll(time.Second, func() bool {
		_, _ = lan4.WriteToUDPAddrPort([]byte("x"), ap(mediaV4, mediaPort))
		return media4.count(lanV4) > 0
	})
	tp.ipn(roleEdge, "link", "set", "wan0", "up")
	if _, ok := metest.Poll(2*time.Second, func() bool {
		return strings.Contains(tp.ipn(roleEdge, "route", "show", "table", "100"), "52.112.0.0/14")
	}); !ok {
		t.Fatal("routes not restored after link up")
	}
	p := tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, lanV4)
	if p.wan < uint64(probeCount) || media4.count(lanV4) < probeCount {
		t.Errorf("without the flush the flow should leave wan0 un-NATed: wan0 +%d, receiver saw %s", p.wan, media4.seen())
	}
	_ = m
}

// TestKernelFailClosed checks on_uplink_down: fail_closed: with the uplink
// administratively down or without carrier, media is refused (unreachable)
// instead of entering the VPN, while other traffic keeps using the VPN.
func TestKernelFailClosed(t *testing.T) {
	needKernel(t, true)
	tp := newTopo(t)
	edge := tp.edgeHandle()
	lan4 := tp.udp(roleLAN, "udp4", "10.20.0.10:0", 0)
	lan6 := tp.udp(roleLAN, "udp6", "[fd20::10]:0", 0)
	marked4 := tp.udp(roleEdge, "udp4", "0.0.0.0:0", testMark)
	media4 := tp.sink(roleInet, ap(mediaV4, mediaPort))
	media6 := tp.sink(roleInet, ap(mediaV6, mediaPort))
	other4 := tp.sink(roleInet, ap(otherV4, mediaPort))
	cfg := kernelConfig()
	cfg.OnUplinkDown = UplinkDownFailClosed
	m := tp.manager(cfg, nil)
	tp.expectDirect("up: LAN to media", tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, wanV4), media4, wanV4)

	for _, c := range []struct {
		name      string
		down, up  []string
		wantState string
	}{
		{"admin down", []string{"-n", tp.ns(roleEdge), "link", "set", "wan0", "down"}, []string{"-n", tp.ns(roleEdge), "link", "set", "wan0", "up"}, uplinkDown},
		{"carrier lost", []string{"-n", tp.ns(roleInet), "link", "set", "eth0", "down"}, []string{"-n", tp.ns(roleInet), "link", "set", "eth0", "up"}, uplinkNoCarrier},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp.run(append([]string{"ip"}, c.down...)...)
			if _, ok := metest.Poll(2*time.Second, func() bool {
				return m.FullStatus().Uplink.State == c.wantState && !strings.Contains(tp.ipn(roleEdge, "route", "show", "table", "100"), "via")
			}); !ok {
				t.Fatalf("uplink state %q, table 100:\n%s", m.FullStatus().Uplink.State, tp.ipn(roleEdge, "route", "show", "table", "100"))
			}
			p := tp.probeFor(edge, lan4, ap(mediaV4, mediaPort), media4, wanV4, 300*time.Millisecond)
			if p.vpn >= uint64(probeCount) || media4.count(lanV4) > 0 || media4.count(wanV4) > 0 {
				t.Errorf("fail closed: LAN media must be refused, not sent: vpn0 +%d wan0 +%d, receiver saw %s", p.vpn, p.wan, media4.seen())
			}
			p = tp.probeFor(edge, lan6, ap(mediaV6, mediaPort), media6, wanV6, 300*time.Millisecond)
			if p.vpn >= uint64(probeCount) || media6.count(lanV6) > 0 {
				t.Errorf("fail closed: LAN IPv6 media must be refused: vpn0 +%d, receiver saw %s", p.vpn, media6.seen())
			}
			if _, err := marked4.WriteToUDPAddrPort([]byte("x"), ap(otherV4, mediaPort)); !isUnreachable(err) {
				t.Errorf("marked socket send with the uplink down: err = %v, want EHOSTUNREACH or ENETUNREACH", err)
			}
			if r, err := checkIn(tp.handle(roleEdge), CheckQuery{Dst: mediaV4, Proto: unix.IPPROTO_UDP, Dport: mediaPort}); err != nil || r.Refused == "" {
				t.Errorf("check media with the uplink down = %q, %v; want refused", r, err)
			}
			tp.expectVPN("other traffic keeps the VPN", tp.probe(edge, lan4, ap(otherV4, mediaPort), other4, lanV4), other4, lanV4)

			tp.run(append([]string{"ip"}, c.up...)...)
			if _, ok := metest.Poll(2*time.Second, func() bool {
				_, _ = lan4.WriteToUDPAddrPort([]byte("x"), ap(mediaV4, mediaPort))
				return media4.count(wanV4) > 0
			}); !ok {
				t.Fatalf("media not restored after %s ended", c.name)
			}
		})
	}
}

// TestKernelUDPMatch checks match: udp: only UDP to the media ports goes
// direct, and check needs the selectors to show it.
func TestKernelUDPMatch(t *testing.T) {
	needKernel(t, true)
	tp := newTopo(t)
	edge := tp.edgeHandle()
	lan4 := tp.udp(roleLAN, "udp4", "10.20.0.10:0", 0)
	media3478 := tp.sink(roleInet, ap(mediaV4, 3478))
	media443 := tp.sink(roleInet, ap(mediaV4, 443))
	cfg := kernelConfig()
	cfg.Match = MatchUDP
	tp.manager(cfg, nil)
	tp.expectDirect("UDP 3478 to media", tp.probe(edge, lan4, ap(mediaV4, 3478), media3478, wanV4), media3478, wanV4)
	tp.expectVPN("UDP 443 to media", tp.probe(edge, lan4, ap(mediaV4, 443), media443, lanV4), media443, lanV4)
	with, err := checkIn(tp.handle(roleEdge), CheckQuery{Dst: mediaV4, Src: lanV4, Iif: "lan0", Proto: unix.IPPROTO_UDP, Dport: 3478})
	if err != nil || with.Dev != "wan0" || with.Table != "100" {
		t.Errorf("check with udp dport 3478 = %q, %v; want dev wan0 table 100", with, err)
	}
	without, err := checkIn(tp.handle(roleEdge), CheckQuery{Dst: mediaV4, Src: lanV4, Iif: "lan0"})
	if err != nil || without.Dev != "vpn0" {
		t.Errorf("check without selectors = %q, %v; want the misleading dev vpn0", without, err)
	}
}

// TestKernelPlanCommands runs a plan's ip commands with iproute2 and then
// starts the reconciler on the result: it must find nothing to change, so
// the rendered commands mean exactly what the netlink requests do.
func TestKernelPlanCommands(t *testing.T) {
	needKernel(t, false)
	tp := newTopo(t)
	for _, cfg := range []Config{kernelConfig(), func() Config {
		c := kernelConfig()
		c.Match, c.OnUplinkDown = MatchUDP, UplinkDownFailClosed
		c.Media.Presets = []string{"teams", "zoom", "meet"}
		return c
	}()} {
		rep, err := oneShot(t.Context(), cfg, ModePlan, nsHandle{ns: tp.handle(roleEdge)})
		if err != nil || len(rep.Changes) == 0 {
			t.Fatalf("plan: %d changes, %v", len(rep.Changes), err)
		}
		if strings.Contains(tp.ipn(roleEdge, "rule"), "proto 77") {
			t.Fatal("plan changed the kernel")
		}
		for _, c := range rep.Changes {
			args := strings.Fields(c)
			tp.run(append([]string{"ip", "-n", tp.ns(roleEdge)}, args[1:]...)...)
		}
		rep, err = oneShot(t.Context(), cfg, ModeEnforce, nsHandle{ns: tp.handle(roleEdge)})
		if err != nil || len(rep.Changes) != 0 {
			t.Errorf("apply after running the plan with ip: %v, changes %v", err, rep.Changes)
		}
		if _, err := flushIn(nsHandle{ns: tp.handle(roleEdge)}, 77); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKernelReloadNoGap reloads to another layout (priorities, tables)
// and a media file while a LAN flow sends to a media address every
// millisecond: adding before deleting means no packet of it takes the VPN
// during the switch.
func TestKernelReloadNoGap(t *testing.T) {
	needKernel(t, true)
	tp := newTopo(t)
	edge := tp.edgeHandle()
	lan4 := tp.udp(roleLAN, "udp4", "10.20.0.10:0", 0)
	media4 := tp.sink(roleInet, ap(mediaV4, mediaPort))
	m := tp.manager(kernelConfig(), nil)
	tp.expectDirect("before reload", tp.probe(edge, lan4, ap(mediaV4, mediaPort), media4, wanV4), media4, wanV4)

	file := t.TempDir() + "/media.json"
	if err := os.WriteFile(file, []byte(`{"format": "mediaedge-media-v1", "source": "test", "prefixes": ["52.112.0.0/14", "52.122.0.0/15", "2603:1063::/38", "192.0.2.0/24"], "udp_ports": ["3478-3481"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := kernelConfig()
	cfg.Priority, cfg.Tables = 2000, TablesConfig{Media: 110, Direct: 111}
	cfg.Media.Presets, cfg.Media.File = nil, file

	media4.reset()
	stop := make(chan struct{})
	sent := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sent <- n
				return
			case <-tick.C:
				if _, err := lan4.WriteToUDPAddrPort([]byte("gap?"), ap(mediaV4, mediaPort)); err == nil {
					n++
				}
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := m.Reload(t.Context(), cfg); err != nil {
		t.Error(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	n := <-sent
	if _, ok := metest.Poll(time.Second, func() bool { return media4.count(wanV4) >= n }); !ok || media4.count(lanV4) > 0 {
		t.Errorf("during the reload %d packets were sent: %s arrived direct, %d through the VPN (want all direct)",
			n, media4.seen(), media4.count(lanV4))
	}
	got := tp.ipState()
	if strings.Contains(got, " 1010:") || strings.Contains(got, "table 100") || !strings.Contains(got, " 2010:") {
		t.Errorf("after the reload:\n%s", got)
	}
}
