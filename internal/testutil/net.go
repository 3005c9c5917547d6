package testutil

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
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

// WaitUDPBound waits until a UDP socket is bound to port on this host
// (IPv4, read from /proc/net/udp), or fails t after timeout: a program
// started by a test (gst-launch, turnutils_peer) takes a while to listen,
// longer on a busy machine. Without procfs it waits a second.
func WaitUDPBound(t testing.TB, port int, timeout time.Duration) {
	t.Helper()
	want := fmt.Sprintf(":%04X ", port)
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile("/proc/net/udp")
		if err != nil {
			time.Sleep(time.Second)
			return
		}
		for _, ln := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(ln); len(f) > 2 && strings.HasSuffix(f[1]+" ", want) {
				return
			}
		}
	}
	t.Fatalf("nothing listens on UDP port %d after %v", port, timeout)
}
