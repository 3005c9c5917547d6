package steer

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/testutil"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newSteerer loads and attaches the program in the calling thread's
// namespace, or skips when this process cannot.
func newSteerer(t *testing.T) *Steerer {
	t.Helper()
	s, err := New()
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("steer: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func open(t *testing.T, ap string, dual bool) (int, netip.AddrPort) {
	t.Helper()
	fd, err := udpbatch.Open(netip.MustParseAddrPort(ap), sockopt.Options{}, dual)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	la, err := udpbatch.LocalAddr(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, la
}

func send(t *testing.T, dst netip.AddrPort, payload string) {
	t.Helper()
	bind := "127.0.0.1:0"
	if dst.Addr().Is6() {
		bind = "[::1]:0"
	}
	fd, _ := open(t, bind, false)
	var sa unix.Sockaddr
	if dst.Addr().Is6() {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	}
	if err := unix.Sendto(fd, []byte(payload), 0, sa); err != nil {
		t.Fatal(err)
	}
}

// recvOne waits up to a second for a datagram on fd and returns its
// payload and original destination ("" when none came).
func recvOne(t *testing.T, fd int) (string, netip.AddrPort) {
	t.Helper()
	b := udpbatch.NewRecvBatchOrigDst(1)
	buf := [][]byte{make([]byte, 64)}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n, _ := b.Recv(fd, buf); n == 1 {
			return string(buf[0][:b.Size(0)]), b.OrigDst(0)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		_, _ = unix.Poll(fds, 50)
	}
	return "", netip.AddrPort{}
}

// TestSteer steers datagrams for registered sockets to a target, with
// each one's original destination, and leaves the rest to the normal
// lookup: a registered port on another local address, a removed entry.
func TestSteer(t *testing.T) {
	testutil.InNetns(t, func(lo netlink.Link) {
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: netlink.NewIPNet(netip.MustParseAddr("127.0.0.2").AsSlice())}); err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatal(err)
		}
		s := newSteerer(t)
		tfd, tfd6, err := OpenTarget(sockopt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(tfd)
		if tfd6 < 0 {
			t.Fatal("no IPv6 target in a namespace with ::1")
		}
		defer unix.Close(tfd6)
		tg, err := s.AddTarget(tfd, tfd6)
		if err != nil {
			t.Fatal(err)
		}
		ded, la := open(t, "127.0.0.1:0", false)
		other, _ := open(t, "127.0.0.2:"+itoa(la.Port()), false)
		dual, dla := open(t, "[::]:0", true)
		if err := s.Add(la, false, tg); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(dla, true, tg); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Entries(); n != 3 || err != nil {
			t.Errorf("Entries = %d, %v; want 3 (one, and two for the dual-stack socket)", n, err)
		}

		send(t, la, "a")
		if p, dst := recvOne(t, tfd); p != "a" || dst != la {
			t.Errorf("target got %q for %s, want \"a\" for %s", p, dst, la)
		}
		otherDst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), la.Port())
		send(t, otherDst, "b")
		if p, _ := recvOne(t, other); p != "b" {
			t.Errorf("the socket on 127.0.0.2 got %q, want \"b\" (not steered)", p)
		}
		for _, d := range []string{"127.0.0.1", "::1"} {
			dst := netip.AddrPortFrom(netip.MustParseAddr(d), dla.Port())
			send(t, dst, "c")
			fd := tfd
			if dst.Addr().Is6() {
				fd = tfd6
			}
			if p, got := recvOne(t, fd); p != "c" || got != dst {
				t.Errorf("target got %q for %s, want \"c\" for %s", p, got, dst)
			}
		}
		if err := s.Remove(la, false); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(la, false); err != nil {
			t.Errorf("removing twice: %v", err)
		}
		if n, err := s.Entries(); n != 2 || err != nil {
			t.Errorf("Entries after Remove = %d, %v; want 2", n, err)
		}
		send(t, la, "d")
		if p, _ := recvOne(t, ded); p != "d" {
			t.Errorf("after Remove the socket got %q, want \"d\"", p)
		}
		if err := s.RemoveTarget(tg); err != nil {
			t.Fatal(err)
		}
		send(t, netip.AddrPortFrom(netip.MustParseAddr("::1"), dla.Port()), "e")
		if p, _ := recvOne(t, dual); p != "e" {
			t.Errorf("after RemoveTarget the dual-stack socket got %q, want \"e\"", p)
		}
		for _, fd := range []int{ded, dual, tfd, tfd6} {
			if p, _ := recvOne(t, fd); p != "" {
				t.Errorf("unexpected datagram %q", p)
			}
		}
	})
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

// TestCloseDetaches checks with bpftool that Close leaves no program and
// no link behind.
func TestCloseDetaches(t *testing.T) {
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("steer: bpftool not installed (apt-get install bpftool)")
	}
	testutil.InNetns(t, func(netlink.Link) {
		s := newSteerer(t)
		id, err := s.ProgramID()
		if err != nil {
			t.Fatal(err)
		}
		if !progLinked(t, uint32(id)) {
			t.Fatalf("bpftool link show lists no sk_lookup link of program %d", id)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		testutil.WaitFor(t, "the program freed", 5*time.Second, func() bool {
			return !progLinked(t, uint32(id)) && !progLoaded(t, uint32(id))
		})
		if _, err := s.AddTarget(0, -1); !errors.Is(err, ErrClosed) {
			t.Errorf("AddTarget after Close: %v, want ErrClosed", err)
		}
	})
}

// progLinked reports whether `bpftool link show` lists an sk_lookup link
// of program id.
func progLinked(t testing.TB, id uint32) bool {
	out, err := exec.Command("bpftool", "-j", "link", "show").Output()
	if err != nil {
		t.Fatalf("bpftool link show: %v", err)
	}
	var links []struct {
		ProgID     uint32 `json:"prog_id"`
		AttachType string `json:"attach_type"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("bpftool link show: %v\n%s", err, out)
	}
	for _, l := range links {
		if l.ProgID == id && l.AttachType == "sk_lookup" {
			return true
		}
	}
	return false
}

// progLoaded reports whether `bpftool prog show` lists program id.
func progLoaded(t testing.TB, id uint32) bool {
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		t.Fatalf("bpftool prog show: %v", err)
	}
	var progs []struct {
		ID uint32 `json:"id"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		t.Fatalf("bpftool prog show: %v\n%s", err, out)
	}
	for _, p := range progs {
		if p.ID == id {
			return true
		}
	}
	return false
}
