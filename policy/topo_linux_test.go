package policy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// The kernel tests build this topology in network namespaces they create
// (named mepol<pid><rand>-<role>, deleted in Cleanup even on failure):
//
//	lan host ──lan0── edge ──wan0── inet (media 52.112.0.10, 2603:1063::10;
//	10.20.0.10        │                    other cloud 192.0.2.80, 2001:db8:80::80)
//	fd20::10          vpn0 (full-tunnel default route)      │
//	                  │                                     │
//	                  vpn (concentrator, corporate host ──eth1
//	                       10.99.0.1, fd99::1)
//
// The edge masquerades on wan0 (nftables), as a real edge does: packets that
// went direct reach the internet from 198.51.100.2, packets that went
// through the VPN from the LAN address via the concentrator. Receivers
// record the source they saw, and the edge's interface counters say which
// link carried the packets.

// Addresses of the topology.
var (
	mediaV4    = netip.MustParseAddr("52.112.0.10")
	mediaV6    = netip.MustParseAddr("2603:1063::10")
	otherV4    = netip.MustParseAddr("192.0.2.80")
	otherV6    = netip.MustParseAddr("2001:db8:80::80")
	corpV4     = netip.MustParseAddr("10.99.0.1")
	corpV6     = netip.MustParseAddr("fd99::1")
	lanV4      = netip.MustParseAddr("10.20.0.10")
	lanV6      = netip.MustParseAddr("fd20::10")
	wanV4      = netip.MustParseAddr("198.51.100.2")
	wanV6      = netip.MustParseAddr("2001:db8:100::2")
	edgeVPNV4  = netip.MustParseAddr("10.255.0.2")
	edgeVPNV6  = netip.MustParseAddr("fd00:255::2")
	testMark   = uint32(0x4d45)
	mediaPort  = uint16(3478)
	probeCount = 20
)

// needKernel skips unless the test can create network namespaces and has
// iproute2 (and nft when nat is set).
func needKernel(t *testing.T, nat bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("kernel test: needs iproute2 (apt-get install iproute2)")
	}
	if _, err := exec.LookPath("nft"); nat && err != nil {
		t.Skip("kernel test: needs nftables for the edge's masquerade (apt-get install nftables)")
	}
}

type topo struct {
	t      *testing.T
	prefix string
}

// roles of the namespaces.
const (
	roleLAN  = "lan"
	roleEdge = "edge"
	roleVPN  = "vpn"
	roleInet = "inet"
)

func (tp *topo) ns(role string) string { return tp.prefix + "-" + role }

// run runs a command and fails the test with its output on error.
func (tp *topo) run(args ...string) string {
	tp.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipn runs ip in a namespace: ipn("edge", "rule", "del", "pref", "1010").
func (tp *topo) ipn(role string, args ...string) string {
	tp.t.Helper()
	return tp.run(append([]string{"ip", "-n", tp.ns(role)}, args...)...)
}

// sysctl sets "net.ipv4.conf.all.rp_filter=1"-style settings in role's
// namespace, writing /proc/sys directly (no procps needed).
func (tp *topo) sysctl(role string, kv ...string) {
	tp.t.Helper()
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		tp.run("ip", "netns", "exec", tp.ns(role), "sh", "-c", "echo "+v+" > "+path)
	}
}

// handle opens the namespace of role; closed in Cleanup.
func (tp *topo) handle(role string) netns.NsHandle {
	tp.t.Helper()
	h, err := netns.GetFromName(tp.ns(role))
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { h.Close() })
	return h
}

// newTopo builds the topology. With fullTunnel, the edge's main table
// sends everything into the VPN (the state mediaedge works against).
func newTopo(t *testing.T) *topo {
	t.Helper()
	tp := &topo{t: t, prefix: fmt.Sprintf("mepol%d%03d", os.Getpid()%100000, rand.IntN(1000))}
	for _, r := range []string{roleLAN, roleEdge, roleVPN, roleInet} {
		tp.run("ip", "netns", "add", tp.ns(r))
		name := tp.ns(r)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		tp.ipn(r, "link", "set", "lo", "up")
		tp.sysctl(r, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
			"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	}
	// Links.
	tp.ipn(roleEdge, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", tp.ns(roleLAN))
	tp.ipn(roleEdge, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", tp.ns(roleInet))
	tp.ipn(roleEdge, "link", "add", "vpn0", "type", "veth", "peer", "name", "tun0", "netns", tp.ns(roleVPN))
	tp.ipn(roleVPN, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", tp.ns(roleInet))
	addrs := map[string][][2]string{
		roleLAN:  {{"eth0", "10.20.0.10/24"}, {"eth0", "fd20::10/64"}},
		roleEdge: {{"lan0", "10.20.0.1/24"}, {"lan0", "fd20::1/64"}, {"wan0", "198.51.100.2/24"}, {"wan0", "2001:db8:100::2/64"}, {"vpn0", "10.255.0.2/30"}, {"vpn0", "fd00:255::2/64"}},
		roleVPN:  {{"tun0", "10.255.0.1/30"}, {"tun0", "fd00:255::1/64"}, {"eth1", "203.0.113.2/24"}, {"eth1", "2001:db8:203::2/64"}, {"lo", "10.99.0.1/32"}, {"lo", "fd99::1/128"}},
		roleInet: {{"eth0", "198.51.100.1/24"}, {"eth0", "2001:db8:100::1/64"}, {"eth1", "203.0.113.1/24"}, {"eth1", "2001:db8:203::1/64"},
			{"lo", "52.112.0.10/32"}, {"lo", "192.0.2.80/32"}, {"lo", "2603:1063::10/128"}, {"lo", "2001:db8:80::80/128"}},
	}
	for role, as := range addrs {
		for _, a := range as {
			args := []string{"addr", "add", a[1], "dev", a[0]}
			if strings.Contains(a[1], ":") {
				args = append(args, "nodad")
			}
			tp.ipn(role, args...)
		}
		for _, l := range []string{"eth0", "eth1", "lan0", "wan0", "vpn0", "tun0"} {
			_ = exec.Command("ip", "-n", tp.ns(role), "link", "set", l, "up").Run()
		}
	}
	// Routes. The edge's main table is a full tunnel: default into the VPN,
	// plus the host route to the VPN server via the uplink that a VPN client
	// adds (which is where mediaedge learns the uplink's gateway).
	tp.ipn(roleLAN, "route", "add", "default", "via", "10.20.0.1")
	tp.ipn(roleLAN, "-6", "route", "add", "default", "via", "fd20::1")
	tp.ipn(roleEdge, "route", "add", "default", "via", "10.255.0.1", "dev", "vpn0")
	tp.ipn(roleEdge, "-6", "route", "add", "default", "via", "fd00:255::1", "dev", "vpn0")
	tp.ipn(roleEdge, "route", "add", "203.0.113.10/32", "via", "198.51.100.1", "dev", "wan0")
	tp.ipn(roleEdge, "-6", "route", "add", "2001:db8:ffff::10/128", "via", "2001:db8:100::1", "dev", "wan0")
	tp.ipn(roleVPN, "route", "add", "10.20.0.0/24", "via", "10.255.0.2")
	tp.ipn(roleVPN, "-6", "route", "add", "fd20::/64", "via", "fd00:255::2")
	tp.ipn(roleVPN, "route", "add", "default", "via", "203.0.113.1")
	tp.ipn(roleVPN, "-6", "route", "add", "default", "via", "2001:db8:203::1")
	tp.ipn(roleInet, "route", "add", "10.0.0.0/8", "via", "203.0.113.2")
	tp.ipn(roleInet, "-6", "route", "add", "fd00::/7", "via", "2001:db8:203::2")
	for _, r := range []string{roleEdge, roleVPN} {
		tp.sysctl(r, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	}
	// The edge as the package's sysctl file sets it, except strict
	// rp_filter: the rule for the uplink's own address must make replies
	// to marked sockets pass even then.
	tp.sysctl(roleEdge, "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.wan0.rp_filter=1",
		"net.ipv4.conf.all.ignore_routes_with_linkdown=1", "net.ipv6.conf.wan0.ignore_routes_with_linkdown=1",
		"net.ipv6.conf.wan0.keep_addr_on_down=1")
	cmd := exec.Command("ip", "netns", "exec", tp.ns(roleEdge), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet mepol_nat {
	chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	// Warm the neighbour caches so that the first probes are not queued
	// behind address resolution.
	for _, a := range []string{"198.51.100.1", "2001:db8:100::1", "10.255.0.1", "fd00:255::1", "10.20.0.10", "fd20::10"} {
		_ = exec.Command("ip", "netns", "exec", tp.ns(roleEdge), "ping", "-c1", "-W1", a).Run()
	}
	return tp
}

// inNS runs f on a thread in role's namespace. The thread stays locked and
// is discarded when the goroutine ends, so no other goroutine ever runs in
// the wrong namespace.
func inNS[T any](tp *topo, role string, f func() (T, error)) (T, error) {
	h := tp.handle(role)
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(h); err != nil {
			ch <- res{err: err}
			return
		}
		v, err := f()
		ch <- res{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// udp opens a UDP socket in role's namespace, with a mark if mark != 0.
// network is udp4 or udp6.
func (tp *topo) udp(role, network, addr string, mark uint32) *net.UDPConn {
	tp.t.Helper()
	pc, err := inNS(tp, role, func() (net.PacketConn, error) {
		return sockopt.Options{Mark: mark}.ListenPacket(context.Background(), network, addr)
	})
	if err != nil {
		tp.t.Fatalf("udp socket in %s on %s: %v", role, addr, err)
	}
	tp.t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// sink is a UDP receiver that records the source address of every packet
// and echoes it back.
type sink struct {
	conn *net.UDPConn
	done chan struct{}
	mu   sync.Mutex
	from map[netip.Addr]int
}

func (tp *topo) sink(role string, a netip.AddrPort) *sink {
	network := "udp4"
	if a.Addr().Is6() {
		network = "udp6"
	}
	s := &sink{conn: tp.udp(role, network, a.String(), 0), done: make(chan struct{}), from: map[netip.Addr]int{}}
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			n, src, err := s.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed in Cleanup
			}
			s.mu.Lock()
			s.from[src.Addr().Unmap()]++
			s.mu.Unlock()
			_, _ = s.conn.WriteToUDPAddrPort(buf[:n], src)
		}
	}()
	tp.t.Cleanup(func() { s.conn.Close(); <-s.done })
	return s
}

func (s *sink) count(src netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from[src]
}

func (s *sink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from = map[netip.Addr]int{}
}

func (s *sink) seen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.from)
}

// txPackets returns the transmit counter of an edge link.
func (tp *topo) txPackets(h *netlink.Handle, link string) uint64 {
	tp.t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		tp.t.Fatal(err)
	}
	return l.Attrs().Statistics.TxPackets
}

// path is what a probe found: packets each edge link sent and sources the
// receiver saw.
type path struct {
	wan, vpn uint64
	sendErr  error
	replies  int
}

// probe sends probeCount datagrams from conn to dst and waits until the
// receiver saw them from wantSrc (or 2 s pass). It returns the edge's
// counters and how many echoes conn got back.
func (tp *topo) probe(edge *netlink.Handle, conn *net.UDPConn, dst netip.AddrPort, s *sink, wantSrc netip.Addr) path {
	tp.t.Helper()
	return tp.probeFor(edge, conn, dst, s, wantSrc, 2*time.Second)
}

// probeFor is probe with a bound on the wait, for probes expected to be
// refused.
func (tp *topo) probeFor(edge *netlink.Handle, conn *net.UDPConn, dst netip.AddrPort, s *sink, wantSrc netip.Addr, wait time.Duration) path {
	tp.t.Helper()
	s.reset()
	wan0, vpn0 := tp.txPackets(edge, "wan0"), tp.txPackets(edge, "vpn0")
	var p path
	payload := []byte("mediaedge policy probe")
	for range probeCount {
		if _, err := conn.WriteToUDPAddrPort(payload, dst); err != nil {
			p.sendErr = err
			break
		}
	}
	if p.sendErr == nil {
		deadline := time.Now().Add(wait)
		for s.count(wantSrc) < probeCount && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		// Echoes: drain what came back within a short while.
		buf := make([]byte, 2048)
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
				break
			}
			p.replies++
			if p.replies == probeCount {
				break
			}
		}
		_ = conn.SetReadDeadline(time.Time{})
	}
	p.wan, p.vpn = tp.txPackets(edge, "wan0")-wan0, tp.txPackets(edge, "vpn0")-vpn0
	return p
}

// expectDirect checks that a probe left on the uplink and reached dst from
// wantSrc; expectVPN that it left through the tunnel.
func (tp *topo) expectDirect(what string, p path, s *sink, src netip.Addr) {
	tp.t.Helper()
	if p.sendErr != nil || p.wan < uint64(probeCount) || p.vpn >= uint64(probeCount) || s.count(src) < probeCount {
		tp.t.Errorf("%s: want direct (wan0 ≥ %d packets, receiver sees %s): wan0 +%d, vpn0 +%d, receiver saw %s, send error %v",
			what, probeCount, src, p.wan, p.vpn, s.seen(), p.sendErr)
	}
}

func (tp *topo) expectVPN(what string, p path, s *sink, src netip.Addr) {
	tp.t.Helper()
	if p.sendErr != nil || p.vpn < uint64(probeCount) || p.wan >= uint64(probeCount) || s.count(src) < probeCount {
		tp.t.Errorf("%s: want the VPN (vpn0 ≥ %d packets, receiver sees %s): wan0 +%d, vpn0 +%d, receiver saw %s, send error %v",
			what, probeCount, src, p.wan, p.vpn, s.seen(), p.sendErr)
	}
}

// edgeHandle returns a netlink handle in the edge namespace.
func (tp *topo) edgeHandle() *netlink.Handle {
	tp.t.Helper()
	h, err := netlink.NewHandleAt(tp.handle(roleEdge), unix.NETLINK_ROUTE)
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(h.Close)
	return h
}

// ipState returns the edge's rules and the routes of every table but main
// and local, as ip prints them.
func (tp *topo) ipState() string {
	tp.t.Helper()
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.Split(strings.TrimSpace(tp.ipn(roleEdge, fam, "rule")), "\n") {
			b.WriteString(fam + " " + l + "\n")
		}
		for _, l := range strings.Split(tp.ipn(roleEdge, fam, "route", "show", "table", "all"), "\n") {
			if strings.Contains(l, " table ") && !strings.Contains(l, "table local") {
				b.WriteString(fam + " " + l + "\n")
			}
		}
	}
	return b.String()
}

// isUnreachable reports a send refused by an unreachable route.
func isUnreachable(err error) bool {
	return errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH)
}
