package relay

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestFastPathRelayIPv6 runs pion/turn clients through an IPv6 listener
// and relay address with fast_path: on: 4 allocations x 5 echo peers on
// ::1 = 20 channels in the kernel, per-packet integrity, the kernel
// counters against what the peers received and what the API reports, and
// forwarding stopping in the kernel once the allocations are deleted.
func TestFastPathRelayIPv6(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	cfg := baseConfig(t)
	cfg.FastPath = FastPathOn
	cfg.RelayIPv6 = "::1"
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("[::1]:0")}})
	cfg.AllowedPeers = append(cfg.AllowedPeers, config.Prefix{Prefix: netip.MustParsePrefix("::1/128")})
	r := startRelay(t, cfg)
	if r.fast == nil {
		t.Fatal("fast_path: on started without the fast path")
	}
	var server netip.AddrPort
	for _, a := range r.UDPAddrs() {
		if a.Addr().Is6() {
			server = a
		}
	}
	const clients, peers, rounds = 4, 5, 20
	echoes := make([]*countingEcho, peers)
	for i := range echoes {
		echoes[i] = newCountingEchoOn(t, netip.MustParseAddr("::1"))
	}
	conns := make([]net.PacketConn, clients)
	for i := range conns {
		rc, err := udpClient(t, server, testUser, testPass).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		if a := rc.LocalAddr().(*net.UDPAddr).AddrPort().Addr(); !a.Is6() {
			t.Fatalf("allocation over the IPv6 listener got relay address %v", a)
		}
		conns[i] = rc
	}
	testutil.WaitFor(t, "every channel in the kernel", 10*time.Second, func() bool {
		for _, c := range conns {
			for _, e := range echoes {
				roundTrip(t, c, e.conn.LocalAddr(), []byte("warm-up"))
			}
		}
		return r.fastEntries() == clients*peers && r.fastWarm(t)
	})
	base := fastCounters(t, r)
	var warm uint64
	for _, e := range echoes {
		warm += e.packets.Load()
	}
	buf := make([]byte, 2048)
	var sentBytes uint64
	for round := range rounds {
		for ci, c := range conns {
			msgs := make(map[string][]byte, peers)
			for pi, e := range echoes {
				msg := fmt.Appendf(nil, "v6 client %d peer %d round %d %s", ci, pi, round, make([]byte, (round*37+pi*11)%1100))
				msgs[e.conn.LocalAddr().String()] = msg
				sentBytes += uint64(len(msg))
				if _, err := c.WriteTo(msg, e.conn.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			for range peers {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("client %d round %d: %v (%d replies missing)", ci, round, err, len(msgs))
				}
				if want, ok := msgs[from.String()]; !ok || string(buf[:n]) != string(want) {
					t.Fatalf("client %d round %d: unexpected %d bytes from %v", ci, round, n, from)
				}
				delete(msgs, from.String())
			}
		}
	}
	got := fastCounters(t, r)
	want := uint64(clients * peers * rounds)
	if got.toPeerPackets-base.toPeerPackets != want || got.toClientPackets-base.toClientPackets != want ||
		got.toPeerBytes-base.toPeerBytes != sentBytes || got.toClientBytes-base.toClientBytes != sentBytes {
		t.Errorf("kernel counters %+v (before the rounds %+v), want %d packets and %d bytes more each way", got, base, want, sentBytes)
	}
	var peerGot uint64
	for _, e := range echoes {
		peerGot += e.packets.Load()
	}
	if peerGot-warm != want {
		t.Errorf("peers got %d datagrams after warm-up, want %d", peerGot-warm, want)
	}
	testutil.WaitFor(t, "kernel counters in the API", 5*time.Second, func() bool {
		var api uint64
		for _, a := range r.Allocations() {
			api += a.PacketsToPeer
		}
		return api == peerGot
	})
	for _, c := range conns {
		c.Close()
	}
	testutil.WaitFor(t, "allocations deleted", 5*time.Second, func() bool {
		return len(r.Allocations()) == 0 && r.fastEntries() == 0
	})
	if ps, err := r.fast.Peers(); err != nil || len(ps) != 0 {
		t.Errorf("kernel entries after the allocations ended: %v (%v)", ps, err)
	}
}
