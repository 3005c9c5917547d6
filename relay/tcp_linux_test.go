package relay

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// tcpEchoPeer is a TCP peer that echoes every connection until the test
// ends.
func tcpEchoPeer(t *testing.T) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr)
}

// TestTCPConnectDoesNotBlockClient checks that a Connect to a peer that
// does not answer leaves the client's other requests flowing: a second
// Connect on the same control connection succeeds at once, a duplicate of
// the pending one is refused with 446, and ending the allocation cancels
// the stalled dial.
func TestTCPConnectDoesNotBlockClient(t *testing.T) {
	echo := tcpEchoPeer(t)
	stall := netip.MustParseAddrPort("127.0.0.1:9") // never dialled: the hook stalls it
	stalled := make(chan struct{})
	cancelled := make(chan struct{})
	var once sync.Once
	r := startRelayWith(t, baseConfig(t), func(s *Server) {
		// Were the Connect handled on the client's reader, the second one
		// would wait this long.
		s.connectTimeout = 20 * time.Second
		dial := s.dial
		s.dial = func(ctx context.Context, network string, local, peer netip.AddrPort) (net.Conn, error) {
			if peer != stall {
				return dial(ctx, network, local, peer)
			}
			once.Do(func() { close(stalled) })
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		}
	})
	c, _ := tcpClient(t, r.tcp, testUser, testPass)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	stallErr := make(chan error, 1)
	go func() {
		_, err := alloc.Dial("tcp", stall.String())
		stallErr <- err
	}()
	select {
	case <-stalled:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay never dialled the stalled peer")
	}

	start := time.Now()
	conn, err := alloc.Dial("tcp", echo.String())
	if err != nil {
		t.Fatalf("Connect while another is pending: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Connect took %v behind the stalled one", d)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	conn.Close()

	if _, err := alloc.Dial("tcp", stall.String()); err == nil || !strings.Contains(err.Error(), "446") {
		t.Errorf("second Connect to a pending peer: %v, want 446", err)
	}

	alloc.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("ending the allocation did not cancel the pending dial")
	}
	c.Close()
	select {
	case <-stallErr:
	case <-time.After(5 * time.Second):
		t.Fatal("the client's stalled Connect never returned")
	}
}

// TestTCPConnectFailureIs447 checks that a peer refusing the connection is
// answered with 447 (RFC 6062 section 5.2).
func TestTCPConnectFailureIs447(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	r := startRelay(t, baseConfig(t))
	c, _ := tcpClient(t, r.tcp, testUser, testPass)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	if _, err := alloc.Dial("tcp", closed); err == nil || !strings.Contains(err.Error(), "447") {
		t.Fatalf("Connect to a closed port: %v, want 447", err)
	}
}

// TestTCPBandwidthCap checks that a TCP allocation's peer connection is
// held to bitrate_per_allocation: TCP cannot drop, so the relay delays.
func TestTCPBandwidthCap(t *testing.T) {
	echo := tcpEchoPeer(t)
	cfg := baseConfig(t)
	cfg.Limits.BitratePerAllocation = 800_000 // 100 KB/s, burst 20 KB
	r := startRelay(t, cfg)
	c, _ := tcpClient(t, r.tcp, testUser, testPass)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	conn, err := alloc.Dial("tcp", echo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const total = 120_000 // at least (120 KB - 20 KB burst) / 100 KB/s = 1 s
	payload := make([]byte, total)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		werr <- err
	}()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(conn, make([]byte, total)); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	elapsed := time.Since(start)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if elapsed < 900*time.Millisecond {
		t.Errorf("%d bytes each way took %v under a 100 KB/s cap, want at least 1 s", total, elapsed)
	}
	if got := r.metric(t, "mediaedge_relay_tcp_throttled_seconds_total"); got <= 0 {
		t.Errorf("throttled seconds = %v, want > 0", got)
	}
	// The last bytes can arrive before the relay counted them.
	var as []AllocationInfo
	testutil.WaitFor(t, "the relayed bytes to be counted", 10*time.Second, func() bool {
		as = r.Allocations()
		return len(as) == 1 && as[0].BytesToPeer >= total && as[0].BytesToClient >= total
	})
	if len(as) != 1 || as[0].BytesToPeer != total || as[0].BytesToClient != total {
		t.Errorf("allocations = %+v", as)
	}
}
