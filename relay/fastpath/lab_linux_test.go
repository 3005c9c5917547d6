package fastpath

import (
	"bufio"
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
