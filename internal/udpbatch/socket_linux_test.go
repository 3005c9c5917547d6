package udpbatch

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// rawSock opens a socket with Open and closes it at the end of the test.
func rawSock(tb testing.TB, addr string, o sockopt.Options, dualStack bool) (int, netip.AddrPort) {
	tb.Helper()
	fd, err := Open(netip.MustParseAddrPort(addr), o, dualStack)
	if err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
			tb.Skipf("cannot bind %s: %v", addr, err)
		}
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	la, err := LocalAddr(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return fd, la
}

func TestOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		addr   string
		dual   bool
		want   string // the bound address without the port
		v6only int    // -1: an IPv4 socket
	}{
		{name: "ipv4", addr: "127.0.0.1:0", want: "127.0.0.1", v6only: -1},
		{name: "ipv6", addr: "[::1]:0", want: "::1", v6only: 1},
		{name: "ipv6 wildcard, one family", addr: "[::]:0", want: "::", v6only: 1},
		{name: "ipv6 wildcard, dual-stack", addr: "[::]:0", dual: true, want: "::", v6only: 0},
		{name: "ipv4-mapped bind address", addr: "[::ffff:127.0.0.1]:0", dual: true, want: "127.0.0.1", v6only: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, la := rawSock(t, tc.addr, sockopt.Options{}, tc.dual)
			if la.Addr().String() != tc.want || la.Port() == 0 {
				t.Errorf("local address %s, want %s with a port", la, tc.want)
			}
			fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
			if err != nil || fl&unix.O_NONBLOCK == 0 {
				t.Errorf("flags %#x, %v: want O_NONBLOCK", fl, err)
			}
			fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if err != nil || fdfl&unix.FD_CLOEXEC == 0 {
				t.Errorf("descriptor flags %#x, %v: want FD_CLOEXEC", fdfl, err)
			}
			if tc.v6only >= 0 {
				if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v != tc.v6only {
					t.Errorf("IPV6_V6ONLY = %d, %v; want %d", v, err, tc.v6only)
				}
			}
			// The same address and port again: taken.
			again := netip.AddrPortFrom(netip.MustParseAddrPort(tc.addr).Addr(), la.Port())
			if fd2, err := Open(again, sockopt.Options{}, tc.dual); !IsAddrInUse(err) {
				if err == nil {
					unix.Close(fd2)
				}
				t.Errorf("binding %s again: %v, want EADDRINUSE", again, err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ap   netip.AddrPort
	}{
		{"no address", netip.AddrPort{}},
		{"zoned address", netip.AddrPortFrom(netip.MustParseAddr("fe80::1%lo"), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fd, err := Open(tc.ap, sockopt.Options{}, false); err == nil {
				unix.Close(fd)
				t.Fatalf("Open(%v) succeeded", tc.ap)
			}
		})
	}
	if _, err := LocalAddr(-1); !errors.Is(err, unix.EBADF) {
		t.Errorf("LocalAddr(-1) = %v, want EBADF", err)
	}
}

// TestOpenOptions: the options are set before bind, so that sockets with
// SO_REUSEPORT share a port, and the mark is in place.
func TestOpenOptions(t *testing.T) {
	o := sockopt.Options{RecvBuffer: 1 << 20, SendBuffer: 1 << 20, ReusePort: true}
	if os.Geteuid() == 0 {
		o.Mark = 0x4d45
	}
	fd, la := rawSock(t, "127.0.0.1:0", o, false)
	rawSock(t, la.String(), o, false) // the same port: SO_REUSEPORT
	g, err := sockopt.ReadFD(fd)
	if err != nil || g.RecvBuffer < o.RecvBuffer && os.Geteuid() == 0 {
		t.Errorf("granted %+v, %v; want at least %d", g, err, o.RecvBuffer)
	}
	if m, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK); err != nil || m != int(o.Mark) {
		t.Errorf("SO_MARK = %#x, %v; want %#x", m, err, o.Mark)
	}
	if os.Geteuid() != 0 {
		if _, err := Open(netip.MustParseAddrPort("127.0.0.1:0"), sockopt.Options{Mark: 1}, false); !errors.Is(err, unix.EPERM) {
			t.Errorf("a mark without CAP_NET_ADMIN: %v, want EPERM", err)
		}
	}
}

func TestGSOSupported(t *testing.T) {
	var u unix.Utsname
	_ = unix.Uname(&u)
	if !GSOSupported() {
		t.Fatalf("UDP GSO not detected on kernel %s (Linux 4.18 has it)", unix.ByteSliceToString(u.Release[:]))
	}
}

func TestGSOErrors(t *testing.T) {
	for _, tc := range []struct {
		err                 error
		refused, persistent bool // persistent: the GSO switch turns off at once
	}{
		{unix.EIO, true, false},
		{unix.ENOPROTOOPT, true, true},
		{unix.EOPNOTSUPP, true, true},
		{unix.EINVAL, true, false},
		{unix.EAGAIN, false, false},
		{unix.EPERM, false, false},
		{unix.ENETUNREACH, false, false},
		{nil, false, false},
	} {
		if got := GSORefused(tc.err); got != tc.refused {
			t.Errorf("GSORefused(%v) = %v", tc.err, got)
		}
		if got := gsoPersistent(tc.err); got != tc.persistent {
			t.Errorf("gsoPersistent(%v) = %v", tc.err, got)
		}
	}
}
