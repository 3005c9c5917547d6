package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
	"github.com/mediaedge/mediaedge/relay/fastpath"
)

const netnsChildEnv = "MEDIAEDGE_TEST_IN_NETNS"

// inOwnNetns runs the calling test again in a child process in a new network
// namespace (every thread of the relay must live there, so the whole process
// moves, not one thread) and reports its result. It returns true in the
// child, after bringing loopback up; the caller then runs the test body.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsChildEnv) == "1" {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatalf("lo: %v", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatalf("lo up: %v", err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("relay: fast-path test needs root (new netns, CAP_BPF, CAP_NET_ADMIN)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a new netns: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^--- PASS: ` + regexp.QuoteMeta(t.Name())).Match(out) {
		t.Fatalf("in a new netns the test did not pass:\n%s", out)
	}
	t.Logf("in a new netns:\n%s", out)
	return false
}

// countingEcho is a UDP echo peer that counts what it received.
type countingEcho struct {
	conn    *net.UDPConn
	packets atomic.Uint64
	bytes   atomic.Uint64
}

func newCountingEcho(t *testing.T) *countingEcho {
	t.Helper()
	return newCountingEchoOn(t, netip.MustParseAddr("127.0.0.1"))
}

// newCountingEchoOn is newCountingEcho on address a.
func newCountingEchoOn(t *testing.T, a netip.Addr) *countingEcho {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		t.Fatal(err)
	}
	e := &countingEcho{conn: c}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			e.packets.Add(1)
			e.bytes.Add(uint64(n))
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return e
}

// fastEntries is how many channels of the relay the kernel forwards.
func (r *testRelay) fastEntries() int {
	r.mu.Lock()
	as := make([]*alloc, 0, len(r.allocs))
	for _, a := range r.allocs {
		as = append(as, a)
	}
	r.mu.Unlock()
	n := 0
	for _, a := range as {
		a.mu.Lock()
		n += len(a.fast)
		a.mu.Unlock()
	}
	return n
}

// TestFastPathRelay runs pion/turn clients through the relay with
// fast_path: on: 10 allocations x 10 echo peers = 100 channels, per-packet
// integrity (payload, order, no loss), the kernel counters against what the
// peers received, the accounting line, and forwarding stopping in the kernel
// once the allocations are deleted.
func TestFastPathRelay(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	cfg := baseConfig(t)
	cfg.FastPath = FastPathOn
	r := startRelay(t, cfg)
	if r.fast == nil {
		t.Fatal("fast_path: on started without the fast path")
	}
	const clients, peers, rounds = 10, 10, 20
	echoes := make([]*countingEcho, peers)
	for i := range echoes {
		echoes[i] = newCountingEcho(t)
	}
	type leg struct {
		conn net.PacketConn // the relayed address's conn: LocalAddr is the relay address
	}
	legs := make([]leg, clients)
	for i := range legs {
		c := udpClient(t, r.udp, testUser, testPass)
		rc, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		legs[i].conn = rc
		// Warm up: the pion client binds a channel per peer in the
		// background after its first write to it.
		for _, e := range echoes {
			roundTrip(t, rc, e.conn.LocalAddr(), []byte("warm-up"))
		}
	}
	testutil.WaitFor(t, "every channel in the kernel", 10*time.Second, func() bool {
		for _, l := range legs {
			for _, e := range echoes {
				roundTrip(t, l.conn, e.conn.LocalAddr(), []byte("warm-up"))
			}
		}
		return r.fastEntries() == clients*peers && r.fastWarm(t)
	})
	base := fastCounters(t, r)
	var warmPackets, warmBytes uint64
	for _, e := range echoes {
		warmPackets += e.packets.Load()
		warmBytes += e.bytes.Load()
	}

	buf := make([]byte, 2048)
	var sentBytes uint64
	for round := range rounds {
		for ci, l := range legs {
			msgs := make(map[string][]byte, peers)
			for pi, e := range echoes {
				msg := []byte(fmt.Sprintf("client %d peer %d round %d %s", ci, pi, round, make([]byte, (round*31+pi)%700)))
				msgs[e.conn.LocalAddr().String()] = msg
				sentBytes += uint64(len(msg))
				if _, err := l.conn.WriteTo(msg, e.conn.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			for range peers {
				_ = l.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := l.conn.ReadFrom(buf)
				if err != nil {
					t.Fatalf("client %d round %d: %v (%d replies missing)", ci, round, err, len(msgs))
				}
				want, ok := msgs[from.String()]
				if !ok || string(buf[:n]) != string(want) {
					t.Fatalf("client %d round %d: unexpected %d bytes from %v (lost, reordered or corrupt)", ci, round, n, from)
				}
				delete(msgs, from.String())
			}
		}
	}

	// The kernel forwarded exactly the rounds, both ways (the flow is quiet:
	// every echo came back), and the peers got exactly the warm-up plus the
	// rounds.
	var peerGot Counters4
	got := fastCounters(t, r)
	got.toPeerPackets -= base.toPeerPackets
	got.toPeerBytes -= base.toPeerBytes
	got.toClientPackets -= base.toClientPackets
	got.toClientBytes -= base.toClientBytes
	for _, e := range echoes {
		peerGot.toPeerPackets += e.packets.Load()
		peerGot.toPeerBytes += e.bytes.Load()
	}
	want := uint64(clients * peers * rounds)
	if got.toPeerPackets != want || got.toClientPackets != want || got.toPeerBytes != sentBytes || got.toClientBytes != sentBytes {
		t.Errorf("kernel counters %+v, want %d packets and %d bytes each way", got, want, sentBytes)
	}
	if peerGot.toPeerPackets-warmPackets != want || peerGot.toPeerBytes-warmBytes != sentBytes {
		t.Errorf("peers got %d packets / %d bytes after warm-up, want %d / %d",
			peerGot.toPeerPackets-warmPackets, peerGot.toPeerBytes-warmBytes, want, sentBytes)
	}

	// Within a housekeeping period, /v1/relay/allocations and the metrics
	// count what the peers got, kernel traffic included.
	testutil.WaitFor(t, "kernel counters in the API and metrics", 5*time.Second, func() bool {
		var api uint64
		for _, a := range r.Allocations() {
			api += a.PacketsToPeer
		}
		return api == peerGot.toPeerPackets &&
			uint64(r.metric(t, "mediaedge_relay_packets_total", "direction", "to_peer")) == peerGot.toPeerPackets
	})

	// A reload whose policy denies the peers takes every entry out of the
	// kernel at once; user space then refuses the peers' traffic. Allowing
	// them again puts the entries back.
	deny := cfg
	deny.DeniedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("127.0.0.1/32")}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Reload(ctx, deny); err != nil {
		t.Fatalf("reload denying the peers: %v", err)
	}
	if n := r.fastEntries(); n != 0 {
		t.Fatalf("%d entries left in the kernel after the policy denied every peer", n)
	}
	var beforeDeny uint64
	for _, e := range echoes {
		beforeDeny += e.packets.Load()
	}
	for _, l := range legs {
		_, _ = l.conn.WriteTo([]byte("denied"), echoes[0].conn.LocalAddr())
	}
	time.Sleep(300 * time.Millisecond)
	var afterDeny uint64
	for _, e := range echoes {
		afterDeny += e.packets.Load()
	}
	if afterDeny != beforeDeny {
		t.Fatalf("denied peers got %d datagrams", afterDeny-beforeDeny)
	}
	if err := r.Reload(ctx, cfg); err != nil {
		t.Fatalf("reload allowing the peers: %v", err)
	}
	if n := r.fastEntries(); n != clients*peers {
		t.Fatalf("%d entries in the kernel after the peers were allowed again, want %d", n, clients*peers)
	}

	// Channel expiry and permission expiry, as pion reports them: the
	// channel's entry (then all the allocation's, whose peers share one IP)
	// leaves the kernel, and the peer gets nothing more through it.
	ev := r.events()
	r.mu.Lock()
	var two []*alloc
	for _, a := range r.allocs {
		if len(two) < 2 {
			two = append(two, a)
		}
	}
	r.mu.Unlock()
	two[0].mu.Lock()
	gone := two[0].fast[0].e
	two[0].mu.Unlock()
	relayOf := func(a *alloc) net.Addr { return net.UDPAddrFromAddrPort(a.advAddr()) }
	ev.OnChannelDeleted(nil, nil, "", "", "", relayOf(two[0]), nil, gone.Channel)
	if n := r.fastEntries(); n != clients*peers-1 {
		t.Fatalf("%d entries after a channel expired, want %d", n, clients*peers-1)
	}
	ev.OnPermissionDeleted(nil, nil, "", "", "", relayOf(two[1]), net.IPv4(127, 0, 0, 1))
	if n := r.fastEntries(); n != clients*peers-1-peers {
		t.Fatalf("%d entries after a permission expired, want %d", n, clients*peers-1-peers)
	}
	var beforeExp uint64
	for _, e := range echoes {
		beforeExp += e.packets.Load()
	}
	sent := 0
	for _, l := range legs {
		// A leg's relayed address names its allocation.
		switch l.conn.LocalAddr().String() {
		case relayOf(two[0]).String():
			_, _ = l.conn.WriteTo([]byte("expired channel"), net.UDPAddrFromAddrPort(gone.Peer))
			sent++
		case relayOf(two[1]).String():
			_, _ = l.conn.WriteTo([]byte("expired permission"), echoes[0].conn.LocalAddr())
			sent++
		}
	}
	if sent != 2 {
		t.Fatalf("found %d of the 2 allocations among the clients' relayed addresses", sent)
	}
	time.Sleep(300 * time.Millisecond)
	var afterExp uint64
	for _, e := range echoes {
		afterExp += e.packets.Load()
	}
	if afterExp != beforeExp {
		t.Fatalf("peers got %d datagrams through an expired channel or permission", afterExp-beforeExp)
	}

	// Delete the allocations: the entries go and the kernel forwards nothing
	// more. A hand-made ChannelData on an old channel must not reach a peer.
	r.mu.Lock()
	var five []fiveKey
	for _, a := range r.allocs {
		five = append(five, a.route.Load().five())
	}
	r.mu.Unlock()
	for _, l := range legs {
		l.conn.Close() // pion's client refreshes with lifetime 0
	}
	testutil.WaitFor(t, "allocations deleted", 5*time.Second, func() bool {
		return len(r.Allocations()) == 0 && r.fastEntries() == 0
	})
	before := peerGot.toPeerPackets
	for _, f := range five {
		raw, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.client.Addr(), 0)), net.UDPAddrFromAddrPort(f.listener))
		if err != nil {
			t.Fatal(err)
		}
		cd := make([]byte, 8)
		binary.BigEndian.PutUint16(cd, 0x4000)
		binary.BigEndian.PutUint16(cd[2:], 4)
		_, _ = raw.Write(cd)
		raw.Close()
	}
	time.Sleep(300 * time.Millisecond)
	var after uint64
	for _, e := range echoes {
		after += e.packets.Load()
	}
	if after != before {
		t.Errorf("peers got %d datagrams after the allocations were deleted", after-before)
	}

	// The accounting lines count what the peers got (warm-up in user
	// space plus the rounds in the kernel).
	re := regexp.MustCompile(`msg="allocation ended".* packets_to_peer=(\d+) bytes_to_peer=(\d+)`)
	var acctPackets, acctBytes uint64
	testutil.WaitFor(t, "accounting lines", 5*time.Second, func() bool {
		m := re.FindAllStringSubmatch(r.logs.String(), -1)
		acctPackets, acctBytes = 0, 0
		for _, x := range m {
			p, _ := strconv.ParseUint(x[1], 10, 64)
			b, _ := strconv.ParseUint(x[2], 10, 64)
			acctPackets += p
			acctBytes += b
		}
		return len(m) == clients
	})
	if acctPackets != before || acctBytes != peerGot.toPeerBytes {
		t.Errorf("accounting lines: %d packets / %d bytes to peers, the peers got %d / %d",
			acctPackets, acctBytes, before, peerGot.toPeerBytes)
	}
}

// fastWarm reports whether every kernel entry of r has carried a datagram
// toward its peer: pion sends Send indications (user space) until it has
// the ChannelBind response, so only then do the kernel's counters see
// every datagram a test sends.
func (r *testRelay) fastWarm(t *testing.T) bool {
	t.Helper()
	r.mu.Lock()
	as := make([]*alloc, 0, len(r.allocs))
	for _, a := range r.allocs {
		as = append(as, a)
	}
	r.mu.Unlock()
	for _, a := range as {
		a.mu.Lock()
		fes := append([]fastEntry(nil), a.fast...)
		a.mu.Unlock()
		for _, fe := range fes {
			if c, err := r.fast.Counters(fe.e); err != nil || c.ToPeerPackets == 0 {
				return false
			}
		}
	}
	return true
}

// fastCounters sums the kernel's counters over every entry of r.
func fastCounters(t *testing.T, r *testRelay) Counters4 {
	t.Helper()
	var sum Counters4
	r.mu.Lock()
	as := make([]*alloc, 0, len(r.allocs))
	for _, a := range r.allocs {
		as = append(as, a)
	}
	r.mu.Unlock()
	for _, a := range as {
		a.mu.Lock()
		for _, fe := range a.fast {
			c, err := r.fast.Counters(fe.e)
			if err != nil {
				t.Fatal(err)
			}
			sum.add(c.ToPeerPackets, c.ToPeerBytes, c.ToClientPackets, c.ToClientBytes)
		}
		a.mu.Unlock()
	}
	return sum
}

// Counters4 sums fast-path counters in a test.
type Counters4 struct {
	toPeerPackets, toPeerBytes, toClientPackets, toClientBytes uint64
}

func (c *Counters4) add(a, b, d, e uint64) {
	c.toPeerPackets += a
	c.toPeerBytes += b
	c.toClientPackets += d
	c.toClientBytes += e
}

// TestFastPathUnavailable: with the kernel refusing (no CAP_BPF, no BPF),
// auto relays in user space and says so once; on fails the start clearly.
func TestFastPathUnavailable(t *testing.T) {
	refuse := func(s *Server) {
		s.attachFast = func([]netip.Addr) (*fastpath.Forwarder, int, error) {
			return nil, 0, fmt.Errorf("%w: loading program: operation not permitted", fastpath.ErrUnsupported)
		}
	}
	cfg := baseConfig(t)
	cfg.FastPath = FastPathAuto
	r := startRelayWith(t, cfg, refuse)
	if r.fast != nil {
		t.Fatal("auto kept a fast path the kernel refused")
	}
	if n := strings.Count(r.logs.String(), "in-kernel fast path unavailable"); n != 1 {
		t.Errorf("auto logged the fallback %d times, want once:\n%s", n, r.logs.String())
	}
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	roundTrip(t, rc, peer.LocalAddr(), []byte("user space"))

	cfg.FastPath = FastPathOn
	s, err := New(cfg, testDeps())
	if err != nil {
		t.Fatal(err)
	}
	refuse(s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.Start(ctx)
	_ = s.Close()
	if !errors.Is(err, fastpath.ErrUnsupported) || !strings.Contains(err.Error(), "fast_path is on") {
		t.Fatalf("Start with fast_path: on and no BPF = %v, want a clear error wrapping fastpath.ErrUnsupported", err)
	}
}
