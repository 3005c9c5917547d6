package udpbatch

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzSockaddr encodes arbitrary addresses for both socket families and
// decodes them again: what the socket can reach comes back as itself
// (IPv4-mapped addresses as IPv4), the rest is refused.
func FuzzSockaddr(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, uint16(5004), false)
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(443), true)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7}, uint16(40000), false)
	f.Add([]byte{}, uint16(0), true)
	f.Fuzz(func(t *testing.T, ip []byte, port uint16, v6 bool) {
		a, _ := netip.AddrFromSlice(ip)
		ap := netip.AddrPortFrom(a, port)
		var sa unix.RawSockaddrInet6
		n := putSockaddr(&sa, ap, v6)
		reachable := a.IsValid() && (v6 || a.Unmap().Is4())
		switch {
		case n == 0 && reachable, n != 0 && !reachable:
			t.Fatalf("putSockaddr(%s, v6=%v) = %d", ap, v6, n)
		case n == 0:
			return
		case v6 && n != unix.SizeofSockaddrInet6, !v6 && n != unix.SizeofSockaddrInet4:
			t.Fatalf("putSockaddr(%s, v6=%v): length %d", ap, v6, n)
		}
		want := netip.AddrPortFrom(a.Unmap(), port)
		if got := parseSockaddr(&sa); got != want {
			t.Fatalf("%s (v6=%v) decodes as %s", ap, v6, got)
		}
	})
}

func TestParseSockaddrUnknownFamily(t *testing.T) {
	sa := unix.RawSockaddrInet6{Family: unix.AF_UNIX, Port: 0x1234}
	if got := parseSockaddr(&sa); got.IsValid() {
		t.Errorf("AF_UNIX decodes as %s", got)
	}
}
