package testutil

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// FreePort returns a port that was free for both UDP and TCP on 127.0.0.1
// at the time of the call, or fails t.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
		tl.Close()
		if err == nil {
			ul.Close()
			return p
		}
	}
	t.Fatal("testutil: no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// ListenUDP returns a UDP socket on 127.0.0.1 at an ephemeral port, or
// fails t. The caller owns it; it is also closed when the test ends.
func ListenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// AddrOf returns the local address of a UDP socket.
func AddrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }
