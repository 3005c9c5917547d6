package fastpath

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// lab is three network namespaces joined by two veth pairs, the relay in
// the middle: client [c0] <-> [r0] relay [r1] <-> [p0] peer. Everything
// runs on the test's goroutine, locked to its OS thread, which enters a
// namespace with in() to open sockets or change links there.
type lab struct {
	t                    *testing.T
	orig                 netns.NsHandle
	client, relay, peer  netns.NsHandle
	clientIP, listenIP   [2]netip.Addr // [0] IPv4, [1] IPv6
	relayIP, peerIP      [2]netip.Addr
	relayLinks, allLinks []string
}

// newLab builds the namespaces and links; the caller has locked the OS
// thread. Cleanup returns the thread to its namespace and frees the lab.
func newLab(t *testing.T) *lab {
	t.Helper()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netns.Get: %v", err)
	}
	l := &lab{t: t, orig: orig,
		clientIP:   [2]netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8:1::2")},
		listenIP:   [2]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:1::1")},
		relayIP:    [2]netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:2::1")},
		peerIP:     [2]netip.Addr{netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:2::2")},
		relayLinks: []string{"r0", "r1"},
		allLinks:   []string{"c0", "r0", "r1", "p0"},
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("restoring netns: %v", err)) // thread would stay in a lab namespace
		}
		for _, h := range []netns.NsHandle{l.client, l.relay, l.peer, orig} {
			h.Close()
		}
	})
	for _, h := range []*netns.NsHandle{&l.client, &l.peer, &l.relay} {
		if *h, err = netns.New(); err != nil {
			t.Fatalf("netns.New: %v", err)
		}
		l.linkUp("lo")
	}
	// Now in the relay's namespace.
	for _, p := range []struct {
		mine, theirs string
		ns           netns.NsHandle
	}{{"r0", "c0", l.client}, {"r1", "p0", l.peer}} {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.mine}, PeerName: p.theirs, PeerNamespace: netlink.NsFd(p.ns)}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatalf("adding veth %s/%s: %v", p.mine, p.theirs, err)
		}
	}
	addrs := []struct {
		ns   netns.NsHandle
		link string
		a    [2]netip.Addr
		via  [2]netip.Addr // default route, if any
	}{
		{l.client, "c0", l.clientIP, l.listenIP},
		{l.relay, "r0", l.listenIP, [2]netip.Addr{}},
		{l.relay, "r1", l.relayIP, [2]netip.Addr{}},
		{l.peer, "p0", l.peerIP, l.relayIP},
	}
	for _, x := range addrs {
		l.in(x.ns)
		lk, err := netlink.LinkByName(x.link)
		if err != nil {
			t.Fatalf("%s: %v", x.link, err)
		}
		for i, a := range x.a {
			bits := 24
			if a.Is6() {
				bits = 64
			}
			// No duplicate address detection: a tentative address
			// cannot be bound.
			ad := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}, Flags: unix.IFA_F_NODAD}
			if err := netlink.AddrAdd(lk, ad); err != nil {
				t.Fatalf("adding %s to %s: %v", a, x.link, err)
			}
			if err := netlink.LinkSetUp(lk); err != nil {
				t.Fatalf("%s up: %v", x.link, err)
			}
			if via := x.via[i]; via.IsValid() {
				if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lk.Attrs().Index, Gw: via.AsSlice()}); err != nil {
					t.Fatalf("default route via %s: %v", via, err)
				}
			}
		}
	}
	return l
}

// in moves the locked thread into ns.
func (l *lab) in(ns netns.NsHandle) {
	l.t.Helper()
	if err := netns.Set(ns); err != nil {
		l.t.Fatalf("setns: %v", err)
	}
}

func (l *lab) linkUp(name string) {
	l.t.Helper()
	lk, err := netlink.LinkByName(name)
	if err != nil {
		l.t.Fatalf("%s: %v", name, err)
	}
	if err := netlink.LinkSetUp(lk); err != nil {
		l.t.Fatalf("%s up: %v", name, err)
	}
}

func (l *lab) ifindex(name string) int {
	l.t.Helper()
	lk, err := netlink.LinkByName(name)
	if err != nil {
		l.t.Fatalf("%s: %v", name, err)
	}
	return lk.Attrs().Index
}

// nsOf is the namespace holding link name.
func (l *lab) nsOf(name string) netns.NsHandle {
	switch name[0] {
	case 'c':
		return l.client
	case 'p':
		return l.peer
	}
	return l.relay
}

// setTxCsum turns transmit checksum offload of link name on or off, as
// `ethtool -K name tx on|off` does (ETHTOOL_STXCSUM), and reads it back.
// veth's "offload" is to leave the skb CHECKSUM_PARTIAL for the receiver;
// off, the sender's stack (or skb_checksum_help on redirect) fills the
// checksum in.
func (l *lab) setTxCsum(name string, on bool) {
	l.t.Helper()
	l.in(l.nsOf(name))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.t.Fatalf("socket: %v", err)
	}
	defer unix.Close(fd)
	ioctl := func(cmd, data uint32) uint32 {
		type ethtoolValue struct{ cmd, data uint32 }
		ev := &ethtoolValue{cmd: cmd, data: data}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [16]byte
		}
		copy(ifr.name[:], name)
		ifr.data = unsafe.Pointer(ev)
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
			l.t.Fatalf("SIOCETHTOOL %#x on %s: %v", cmd, name, e)
		}
		runtime.KeepAlive(ev)
		return ev.data
	}
	var want uint32
	if on {
		want = 1
	}
	ioctl(unix.ETHTOOL_STXCSUM, want)
	if got := ioctl(unix.ETHTOOL_GTXCSUM, 0); got != want {
		l.t.Fatalf("%s: tx checksum offload is %d after setting %d", name, got, want)
	}
}

// udpCsumErrors reads the UDP checksum error counter of the thread's
// current namespace (IPv4 and IPv6 added).
func udpCsumErrors(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var head []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i := range f {
			if i < len(head) && head[i] == "InCsumErrors" {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				n += v
			}
		}
	}
	b, err = os.ReadFile("/proc/thread-self/net/snmp6")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Udp6InCsumErrors" {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			n += v
		}
	}
	return n
}

// pcapRecords counts the records of a pcap file (tcpdump -w) so far.
func pcapRecords(path string) int {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		return 0
	}
	n := 0
	for off := 24; off+16 <= len(b); n++ {
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	return n
}

// capture runs tcpdump on link name (incoming UDP only) in its namespace
// until the returned function, told how many datagrams to wait for (up
// to 10s: tcpdump writes behind), stops it and returns the file.
func (l *lab) capture(name string) (stop func(want int) string) {
	l.t.Helper()
	ns := l.nsOf(name)
	dup, err := unix.Dup(int(ns))
	if err != nil {
		l.t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "netns")
	defer f.Close()
	path := filepath.Join(l.t.TempDir(), name+".pcap")
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "tcpdump", "-i", name, "-Q", "in", "--immediate-mode", "-s", "2048", "-B", "4096", "-U", "-n", "-w", path, "udp")
	cmd.ExtraFiles = []*os.File{f}
	errs, err := cmd.StderrPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("tcpdump: %v", err)
	}
	ready, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(errs)
		signalled := false
		for sc.Scan() {
			l.t.Logf("tcpdump %s: %s", name, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "listening on") {
				close(ready)
				signalled = true
			}
		}
		if !signalled {
			close(ready)
		}
	}()
	var once sync.Once
	end := func(sig os.Signal) {
		once.Do(func() {
			_ = cmd.Process.Signal(sig)
			<-exited // stderr read to its end before Wait
			_ = cmd.Wait()
		})
	}
	l.t.Cleanup(func() { end(os.Kill) }) // a failed test's capture
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		l.t.Fatal("tcpdump did not start within 10s")
	}
	return func(want int) string {
		_, _ = testutil.Poll(10*time.Second, func() bool { return pcapRecords(path) >= want })
		end(syscall.SIGINT)
		return path
	}
}

// checksumStatus counts the UDP datagrams of a capture by tshark's verdict
// on their checksum (udp.check_checksum on): "1" good, "0" bad, "2"
// unverified (IPv4 without checksum).
func checksumStatus(t *testing.T, pcap string) map[string]int {
	t.Helper()
	out, err := exec.Command("tshark", "-n", "-r", pcap, "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-e", "udp.checksum.status").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}

	got := map[string]int{}
	for _, line := range strings.Fields(string(out)) {
		got[line]++
	}
	return got
}

// channelDataPad is a ChannelData message on ch carrying p, padded to a
// multiple of 4 with pad (RFC 8656 12.5 leaves the padding's value open).
func channelDataPad(ch uint16, p []byte, pad byte) []byte {
	b := channelData(ch, p)
	for i := 4 + len(p); i < len(b); i++ {
		b[i] = pad
	}
	return b
}

// TestForwarderAcrossVeth forwards both ways between a client and a peer
// in two other namespaces, over veth, for IPv4 and IPv6, with transmit
// checksum offload on everywhere (CHECKSUM_PARTIAL end to end), off on
// the relay's links (skb_checksum_help fills the checksum in at the
// relay's egress, from csum_start), and off everywhere (the senders'
// checksums arrive complete and the program's incremental update must be
// right). The receiving kernels verify every checksum they can (a bad one
// is dropped and counted in InCsumErrors); the test compares what every
// receiver got with what was sent, byte for byte, and where the
// datagrams on the wire carry a complete checksum, tshark checks each.
// Last, the peer is a socket on the relay's own host.
func TestForwarderAcrossVeth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: kernel test needs root (netns, veth, CAP_BPF)")
	}
	_, errDump := exec.LookPath("tcpdump")
	_, errShark := exec.LookPath("tshark")
	wire := errDump == nil && errShark == nil
	if !wire {
		t.Log("tcpdump or tshark missing: checksums checked by the receiving kernels only")
	}
	defer goleak.VerifyNone(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lab := newLab(t)
	lab.in(lab.relay)
	fw, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer fw.Close()
	for _, name := range append([]string{"lo"}, lab.relayLinks...) {
		if err := fw.Attach(lab.ifindex(name)); err != nil {
			t.Fatalf("Attach %s: %v", name, err)
		}
	}
	for _, mode := range []struct {
		name string
		off  []string // links with tx checksum offload off
		// wire: the datagrams on the receivers' links carry complete
		// checksums (not CHECKSUM_PARTIAL), so a capture can check them.
		wire bool
	}{
		{"offload on", nil, false},
		{"offload off at the relay", lab.relayLinks, true},
		{"offload off", lab.allLinks, true},
		{"peer on the relay host", nil, false},
	} {
		for _, link := range lab.allLinks {
			lab.setTxCsum(link, !contains(mode.off, link))
		}
		for fam, famName := range []string{"ipv4", "ipv6"} {
			t.Run(mode.name+"/"+famName, func(t *testing.T) {
				outer := lab.t
				lab.t = t
				defer func() { lab.t = outer }()
				if mode.name == "peer on the relay host" {
					// The datagram to the peer goes through loopback's
					// egress (a local source is a martian on r0), the
					// reply comes in on lo.
					lab.roundTripsTo(t, fw, fam, false, lab.relay, lab.relayIP[fam])
					return
				}
				lab.roundTrips(t, fw, fam, mode.wire && wire)
			})
		}
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// roundTrips sends ChannelData from four clients over four channels to
// four echo peers and checks every reply.
// It returns how many datagrams went each way.
func (l *lab) roundTrips(t *testing.T, fw *Forwarder, fam int, wire bool) uint64 {
	return l.roundTripsTo(t, fw, fam, wire, l.peer, l.peerIP[fam])
}

// roundTripsTo is roundTrips with the echo peers on peerIP in namespace
// peerNS.
func (l *lab) roundTripsTo(t *testing.T, fw *Forwarder, fam int, wire bool, peerNS netns.NsHandle, peerIP netip.Addr) uint64 {
	const legs, rounds = 4, 40
	network := [2]string{"udp4", "udp6"}[fam]
	open := func(ns netns.NsHandle, a netip.Addr) *net.UDPConn {
		l.in(ns)
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			t.Fatalf("listen on %s: %v", a, err)
		}
		return c
	}
	var (
		conns   []*net.UDPConn
		dones   []chan struct{}
		clients [legs]*net.UDPConn
		entries [legs]Entry
		peers   [legs]*countingConn
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		for _, d := range dones {
			<-d
		}
	}()
	// The relay's own sockets only see what the kernel does not forward.
	listener := open(l.relay, l.listenIP[fam])
	conns = append(conns, listener)
	for i := range legs {
		clients[i] = open(l.client, l.clientIP[fam])
		relay := open(l.relay, l.relayIP[fam])
		pc := open(peerNS, peerIP)
		conns = append(conns, clients[i], relay, pc)
		peers[i] = &countingConn{conn: pc}
		done := make(chan struct{})
		dones = append(dones, done)
		go peers[i].echo(done)
		entries[i] = Entry{
			Client: addrPort(clients[i]), Listener: addrPort(listener),
			Relay: addrPort(relay), Peer: addrPort(pc),
			Channel: uint16(0x4000 + i), Mark: 0x42,
		}
		if err := fw.Add(entries[i]); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	defer func() {
		for _, e := range entries {
			if _, err := fw.Remove(e); err != nil {
				t.Errorf("Remove: %v", err)
			}
		}
	}()
	var stops [2]func(int) string
	if wire {
		stops = [2]func(int) string{l.capture("p0"), l.capture("c0")}
	}
	l.in(l.client)
	clientErrs := udpCsumErrors(t)
	l.in(peerNS)
	peerErrs := udpCsumErrors(t)

	buf := make([]byte, 2048)
	var sent, sentBytes uint64
	for r := range rounds {
		for i, c := range clients {
			// 1 to 1400 bytes: every padding length, odd and even
			// tails; odd rounds pad with non-zero bytes.
			payload := make([]byte, 1+(r*97+i*13)%1400)
			for k := range payload {
				payload[k] = byte(r*11 + i*5 + k)
			}
			msg := channelDataPad(entries[i].Channel, payload, byte(r%2)*0xa5)
			if _, err := c.WriteToUDPAddrPort(msg, entries[i].Listener); err != nil {
				t.Fatalf("send: %v", err)
			}
			sent++
			sentBytes += uint64(len(payload))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				cs, _ := fw.Counters(entries[i])
				t.Fatalf("leg %d round %d (%d bytes): no reply: %v (kernel counters %+v, peer got %d)",
					i, r, len(payload), err, cs, peers[i].packets.Load())
			}
			want := channelData(entries[i].Channel, payload)[:4+len(payload)]
			if from != entries[i].Listener || !bytes.Equal(buf[:n], want) {
				t.Fatalf("leg %d round %d: got %d bytes from %v, want %d from %v", i, r, n, from, len(want), entries[i].Listener)
			}
		}
	}
	var got Counters
	var peerGot uint64
	for i, e := range entries {
		c, err := fw.Counters(e)
		if err != nil {
			t.Fatal(err)
		}
		got.ToPeerPackets += c.ToPeerPackets
		got.ToPeerBytes += c.ToPeerBytes
		got.ToClientPackets += c.ToClientPackets
		got.ToClientBytes += c.ToClientBytes
		peerGot += peers[i].packets.Load()
	}
	if got != (Counters{ToPeerPackets: sent, ToPeerBytes: sentBytes, ToClientPackets: sent, ToClientBytes: sentBytes}) || peerGot != sent {
		t.Errorf("kernel counters %+v, peers got %d; want %d datagrams and %d bytes each way", got, peerGot, sent, sentBytes)
	}
	_ = listener.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := listener.ReadFromUDPAddrPort(buf); !isTimeout(err) {
		t.Errorf("the relay's listener got a datagram although every channel was in the kernel (%v)", err)
	}
	l.in(l.client)
	if n := udpCsumErrors(t) - clientErrs; n != 0 {
		t.Errorf("the client's kernel counted %d UDP checksum errors", n)
	}
	l.in(peerNS)
	if n := udpCsumErrors(t) - peerErrs; n != 0 {
		t.Errorf("the peer's kernel counted %d UDP checksum errors", n)
	}
	if !wire {
		return sent
	}
	for i, name := range []string{"p0", "c0"} {
		st := checksumStatus(t, stops[i](int(sent)))
		if st["1"] != int(sent) || len(st) != 1 {
			t.Errorf("tshark on %s: checksum verdicts %v, want %d good (\"1\") and nothing else", name, st, sent)
		}
	}
	return sent
}

// countingConn echoes datagrams and counts them; packets is read only
// after the flow went quiet (every echo came back).
type countingConn struct {
	conn    *net.UDPConn
	packets atomic.Uint64
}

func (c *countingConn) echo(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 2048)
	for {
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		c.packets.Add(1)
		_, _ = c.conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

// addSecondLink joins the relay and the peer by a second veth pair,
// [r2] <-> [p2], on which the peer also accepts datagrams for its p0
// address, and returns p2's addresses (IPv4, IPv6): routes through
// them reach the peer the other way.
func (l *lab) addSecondLink() [2]netip.Addr {
	t := l.t
	t.Helper()
	via := [2]netip.Addr{netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("2001:db8:3::2")}
	mine := [2]netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:3::1")}
	l.in(l.relay)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "r2"}, PeerName: "p2", PeerNamespace: netlink.NsFd(l.peer)}); err != nil {
		t.Fatalf("adding veth r2/p2: %v", err)
	}
	for _, side := range []struct {
		ns   netns.NsHandle
		link string
		a    [2]netip.Addr
	}{{l.relay, "r2", mine}, {l.peer, "p2", via}} {
		l.in(side.ns)
		lk, err := netlink.LinkByName(side.link)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range side.a {
			bits := map[bool]int{true: 24, false: 64}[a.Is4()]
			ad := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}, Flags: unix.IFA_F_NODAD}
			if err := netlink.AddrAdd(lk, ad); err != nil {
				t.Fatalf("adding %s: %v", a, err)
			}
		}
		if err := netlink.LinkSetUp(lk); err != nil {
			t.Fatal(err)
		}
	}
	// The peer takes datagrams for its p0 address on p2 too (strict
	// reverse-path filtering would drop them).
	l.in(l.peer)
	for _, f := range []string{"all", "default", "p2"} {
		// /proc/sys/net is the namespace of the thread that opens it.
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+f+"/rp_filter", []byte("0"), 0); err != nil {
			t.Fatalf("rp_filter: %v", err)
		}
	}
	return via
}

// p2Packets reads p2's received packets; only after the flow went quiet.
func (l *lab) p2Packets() uint64 {
	l.in(l.peer)
	lk, err := netlink.LinkByName("p2")
	if err != nil {
		l.t.Fatal(err)
	}
	return lk.Attrs().Statistics.RxPackets
}

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
			if err := fw.Add(e); err == nil {
				t.Errorf("an entry without the mark toward a peer only the mark routes to was added")
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
