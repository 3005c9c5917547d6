package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/steer"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// steerCall is one call of the steering test: the peers' keys and the
// contexts each side encrypts and decrypts with.
type steerCall struct {
	info                  *SessionInfo
	intTx, cloudTx        *srtp.Context
	intRx, cloudRx        *srtp.Context
	intLocal, cloudLocal  netip.AddrPort
	gotAtInt, gotAtCloud  [][]byte // decrypted, in arrival order
	sentToInt, sentToClou [][]byte // plain packets sent toward that side
}

// steerConfig is testConfig with dedicated ports on both legs, steering
// on and a range of n ports per leg on 127.0.0.1.
func steerConfig(n int) Config {
	cfg := testConfig()
	cfg.Steering = SteeringOn
	cfg.MaxSessions = 2 * n
	cfg.Internal.PortMode, cfg.Cloud.PortMode = PortsDedicated, PortsDedicated
	cfg.Internal.Ports = config.PortRange{Min: 20000, Max: uint16(20000 + n - 1)}
	cfg.Cloud.Ports = config.PortRange{Min: 30000, Max: uint16(30000 + n - 1)}
	return cfg
}

// TestSteeringCalls runs many dedicated-port calls with steering on, real
// SRTP both ways: every packet each receiver gets is one its sender sent,
// the steered counter equals the datagrams the gateway received, and the
// dedicated sockets themselves read nothing (every authenticated packet
// was steered). Then a datagram to a steered port on another local
// address reaches the socket there; a deleted call's port refuses
// (ICMP) and its entry is gone; new calls reuse the ports; Close leaves
// no program behind.
func TestSteeringCalls(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	if got := testutil.RaiseNoFile(uint64(4*n + 256)); got < uint64(4*n+256) {
		t.Skipf("RLIMIT_NOFILE %d is too low for %d calls", got, n)
	}
	inProcessNetns(t, func(lo netlink.Link) {
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: netlink.NewIPNet(net.IPv4(127, 0, 0, 2))}); err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatal(err)
		}
		g, err := New(steerConfig(n), component.Deps{Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = g.Start(ctx)
		cancel()
		if errors.Is(err, errSteeringOn) && errors.Is(err, steer.ErrUnsupported) {
			t.Skipf("steering cannot run here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if !g.Status().Steering || !g.metrics.steering.Load() {
			t.Error("status or metrics say steering is off")
		}
		progID, err := g.steer.ProgramID()
		if err != nil {
			t.Fatal(err)
		}

		calls, sent := steerTraffic(t, g, n, 10)
		if got := steeredCount(g); got != uint64(sent) {
			t.Errorf("steered %d datagrams, the gateway was sent %d", got, sent)
		}
		if got := packetsIn(g); got != uint64(sent) {
			t.Errorf("%d packets authenticated, %d sent", got, sent)
		}

		// Another local address, same port: not steered.
		first := calls[0].intLocal
		other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(first.Port())})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		before := steeredCount(g)
		probe := newPeer(t)
		probe.send(fmt.Sprintf("127.0.0.2:%d", first.Port()), []byte("not for the gateway"))
		_ = other.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		if m, _, err := other.ReadFromUDPAddrPort(buf); err != nil || string(buf[:m]) != "not for the gateway" {
			t.Errorf("the socket on 127.0.0.2 got %q, %v", buf[:m], err)
		}
		if got := steeredCount(g); got != before {
			t.Errorf("a datagram to 127.0.0.2 was steered (%d -> %d)", before, got)
		}

		// Deleting every call removes its entries: a datagram to an old
		// port is refused by the kernel (no socket), not steered.
		for _, c := range calls {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := g.Delete(dctx, c.info.ID); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
		if e, err := g.steer.Entries(); e != 0 || err != nil {
			t.Errorf("%d steering entries after every call was deleted (%v), want 0", e, err)
		}
		conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(first))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("late")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Read(buf); !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("a datagram to a deleted call's port: %v, want ECONNREFUSED", err)
		}
		if got := steeredCount(g); got != before {
			t.Errorf("a datagram to a deleted call's port was steered (%d -> %d)", before, got)
		}
		if d := dropCount(g, reasonUnsteered); d != 0 {
			t.Errorf("%d datagrams dropped as %s with no traffic in flight at delete", d, reasonUnsteered)
		}
		// A datagram on a target for a port its worker does not know (as
		// one steered just before its socket closed) is dropped and
		// counted: sent straight to a target's own loopback port here.
		g.mu.Lock()
		target := g.workers[0].sys.steer.socks[0].local
		g.mu.Unlock()
		probe.send(target.String(), []byte("unknown port"))
		testutil.WaitFor(t, "the datagram for an unknown port counted", 5*time.Second, func() bool {
			return dropCount(g, reasonUnsteered) == 1
		})
		before++ // it was read from a target

		// New calls get the same ports (the range holds exactly n) and
		// work.
		again, sent2 := steerTraffic(t, g, n, 2)
		reused := 0
		old := map[netip.AddrPort]bool{}
		for _, c := range calls {
			old[c.intLocal], old[c.cloudLocal] = true, true
		}
		for _, c := range again {
			if old[c.intLocal] {
				reused++
			}
		}
		if e, err := g.steer.Entries(); e != 2*n || err != nil {
			t.Errorf("%d steering entries for %d calls (%v), want %d", e, n, err, 2*n)
		}
		if reused != n {
			t.Errorf("%d of %d new calls reuse an old port, want all", reused, n)
		}
		if got := steeredCount(g); got != before+uint64(sent2) {
			t.Errorf("steered %d datagrams after the reuse, want %d", got, before+uint64(sent2))
		}

		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath("bpftool"); err != nil {
			t.Log("bpftool not installed: the program's release is not checked")
			return
		}
		testutil.WaitFor(t, "the steering program released", 5*time.Second, func() bool {
			return !bpftoolLists(t, "prog", uint32(progID)) && !bpftoolLists(t, "link", uint32(progID))
		})
	})
}

// steerTraffic creates n calls (rtcp-mux, latching internal, given
// cloud) and sends k RTP packets and one RTCP packet each way on each,
// from one peer socket per side. It waits until both sides received
// everything and checks every packet against what was sent; it returns
// the calls and the datagrams the gateway was sent.
func steerTraffic(t *testing.T, g *Gateway, n, k int) ([]*steerCall, int) {
	t.Helper()
	intPeer, cloudPeer := newPeer(t), newPeer(t)
	_ = intPeer.conn.SetWriteBuffer(8 << 20)
	_ = cloudPeer.conn.SetWriteBuffer(8 << 20)
	calls := make([]*steerCall, n)
	for i := range calls {
		kInt, kCloud := newKeyLine(t, suiteAES128SHA80), newKeyLine(t, suiteAEAD128)
		info := mustCreate(t, g, CreateRequest{
			Internal: LegRequest{Crypto: kInt, RTCPMux: true},
			Cloud:    LegRequest{Crypto: kCloud, RTCPMux: true, Remote: cloudPeer.addr()},
		})
		calls[i] = &steerCall{info: info,
			intTx: contextFor(t, kInt, false), cloudTx: contextFor(t, kCloud, false),
			intRx: contextFor(t, info.Internal.Crypto, true), cloudRx: contextFor(t, info.Cloud.Crypto, true),
			intLocal: netip.MustParseAddrPort(info.Internal.Local), cloudLocal: netip.MustParseAddrPort(info.Cloud.Local)}
	}
	atInt, atCloud := newCollector(t, intPeer.conn), newCollector(t, cloudPeer.conn)
	send := func(p *peer, to netip.AddrPort, b []byte) {
		if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// Internal -> cloud first: the internal legs latch the internal peer.
	sent := 0
	for seq := 1; seq <= k+1; seq++ {
		for i, c := range calls {
			var plain, wire []byte
			if seq <= k {
				plain = rtpPacket(t, uint32(i+1), uint16(seq), 160)
				wire = encRTP(t, c.intTx, plain)
			} else {
				plain = rtcpPacket(t, uint32(i+1), 7)
				wire = encRTCP(t, c.intTx, plain)
			}
			c.sentToClou = append(c.sentToClou, plain)
			send(intPeer, c.intLocal, wire)
			sent++
		}
		// 1,000 calls a round: let the gateway keep up (bounded queue).
		if _, ok := testutil.Poll(20*time.Second, func() bool { return atCloud.count() >= seq*n }); !ok {
			t.Fatalf("round %d: the cloud side received %d, want %d; steered %d, in %d, drops %v", seq, atCloud.count(), seq*n, steeredCount(g), packetsIn(g), dropsOf(g))
		}
	}
	for seq := 1; seq <= k+1; seq++ {
		for i, c := range calls {
			var plain, wire []byte
			if seq <= k {
				plain = rtpPacket(t, uint32(0x10000+i), uint16(seq), 172)
				wire = encRTP(t, c.cloudTx, plain)
			} else {
				plain = rtcpPacket(t, uint32(0x10000+i), 9)
				wire = encRTCP(t, c.cloudTx, plain)
			}
			c.sentToInt = append(c.sentToInt, plain)
			send(cloudPeer, c.cloudLocal, wire)
			sent++
		}
		if _, ok := testutil.Poll(20*time.Second, func() bool { return atInt.count() >= seq*n }); !ok {
			t.Fatalf("round %d: the internal side received %d, want %d; steered %d, in %d, drops %v", seq, atInt.count(), seq*n, steeredCount(g), packetsIn(g), dropsOf(g))
		}
	}
	// Quiet: nothing more arrives.
	time.Sleep(100 * time.Millisecond)
	if a, b := atCloud.count(), atInt.count(); a != n*(k+1) || b != n*(k+1) {
		t.Fatalf("received %d at the cloud side and %d at the internal side, want %d each", a, b, n*(k+1))
	}
	for _, c := range calls {
		checkArrived(t, atCloud.take(c.cloudLocal), c.sentToClou, c.cloudRx)
		checkArrived(t, atInt.take(c.intLocal), c.sentToInt, c.intRx)
	}
	return calls, sent
}

// checkArrived decrypts what one side got from one call's leg and
// compares it with what was sent, in order (RTP, then the RTCP).
func checkArrived(t *testing.T, got, want [][]byte, rx *srtp.Context) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i, b := range got {
		var plain []byte
		var err error
		if i == len(want)-1 {
			plain, err = rx.DecryptRTCP(nil, b, nil)
			if err == nil {
				_, err = rtcp.Unmarshal(plain)
			}
		} else {
			plain, err = rx.DecryptRTP(nil, b, nil)
		}
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(plain, want[i]) {
			t.Fatalf("packet %d differs:\n got %x\nwant %x", i, plain, want[i])
		}
	}
}

// TestSteeringDualStack: legs bound to "::" (dual-stack) are steered for
// IPv4 and IPv6 peers alike; the dedicated sockets read nothing.
func TestSteeringDualStack(t *testing.T) {
	inProcessNetns(t, func(netlink.Link) {
		probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		probe.Close()
		cfg := steerConfig(4)
		cfg.Internal.Bind, cfg.Cloud.Bind = "::", "::"
		g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Start(context.Background()); err != nil {
			if errors.Is(err, steer.ErrUnsupported) {
				t.Skipf("steering cannot run here: %v", err)
			}
			t.Fatal(err)
		}
		defer g.Close()
		sent := 0
		for i, v6 := range []bool{false, true, true, false} {
			mk := newPeer
			loop := "127.0.0.1"
			if v6 {
				mk, loop = newPeer6, "::1"
			}
			in, cloud := mk(t), mk(t)
			c := &call{t: t, intRTP: in, intRTCP: in, cloudRTP: cloud, cloudRTCP: cloud,
				kInt: newKeyLine(t, suiteAEAD128), kCloud: newKeyLine(t, suiteAES128SHA80)}
			c.info = mustCreate(t, g, CreateRequest{
				Internal: LegRequest{Crypto: c.kInt, RTCPMux: true},
				Cloud:    LegRequest{Crypto: c.kCloud, RTCPMux: true, Remote: cloud.addr()},
			})
			// The gateway answers with "[::]:port"; send to the peer's
			// own loopback, of its family.
			for _, l := range []*string{&c.info.Internal.Local, &c.info.Internal.LocalRTCP, &c.info.Cloud.Local, &c.info.Cloud.LocalRTCP} {
				ap := netip.MustParseAddrPort(*l)
				*l = netip.AddrPortFrom(netip.MustParseAddr(loop), ap.Port()).String()
			}
			c.exchange(t, 3, uint32(0x500+i))
			sent += 2 * (3 + 1)
		}
		if got := steeredCount(g); got != uint64(sent) {
			t.Errorf("steered %d datagrams, the gateway was sent %d", got, sent)
		}
		if got := packetsIn(g); got != uint64(sent) {
			t.Errorf("%d packets authenticated, %d sent", got, sent)
		}
	})
}

// TestSteeringEntryRefused: when the steerer refuses a dedicated socket's
// entry (here: it was closed under the running gateway), the gateway logs
// it once and that socket is read on its own; calls work as without
// steering.
func TestSteeringEntryRefused(t *testing.T) {
	inProcessNetns(t, func(netlink.Link) {
		var log testutil.SyncBuffer
		g, err := startWith(t, steerConfig(8), false, &log)
		if errors.Is(err, steer.ErrUnsupported) {
			t.Skipf("steering cannot run here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := g.steer.Close(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			c := newCall(t, g, suiteAES128SHA80, suiteAEAD128, true)
			c.exchange(t, 3, uint32(0x700+i))
		}
		if n := steeredCount(g); n != 0 {
			t.Errorf("%d datagrams steered by a closed steerer", n)
		}
		if n := strings.Count(log.String(), "steering refused a dedicated socket"); n != 1 {
			t.Errorf("the refusal was logged %d times, want once:\n%s", n, log.String())
		}
	})
}
