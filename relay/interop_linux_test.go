package relay

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// freePortPair finds p such that UDP p and p+1 are free on loopback
// (turnutils_peer binds both).
func freePortPair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if p%2 == 1 || p > 65000 {
			continue
		}
		c2, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p+1))
		if err != nil {
			continue
		}
		c2.Close()
		return p
	}
	t.Fatal("no free port pair")
	return 0
}

var lostRE = regexp.MustCompile(`Total lost packets (\d+) \(`)
var recvRE = regexp.MustCompile(`tot_recv_msgs=(\d+)`)

// TestInteropCoturnUclient relays coturn's own client (turnutils_uclient)
// to coturn's own peer (turnutils_peer) through mediaedge, over UDP and
// TCP, with and without channels, and wants no packet lost.
func TestInteropCoturnUclient(t *testing.T) {
	uclient, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		t.Skip("turnutils_uclient not installed (Debian package coturn)")
	}
	peerBin, err := exec.LookPath("turnutils_peer")
	if err != nil {
		t.Skip("turnutils_peer not installed (Debian package coturn)")
	}
	cfg := baseConfig(t) // admits 127.0.0.0/8 peers explicitly
	// uclient's RTCP pairs use RESERVATION-TOKEN across two client
	// sockets, which pion keeps per listener socket: one shard (the
	// default).
	cfg.UDPShards = 1
	certPath, keyPath := writeCert(t, t.TempDir(), 1)
	cfg.Listeners = append(cfg.Listeners, tlsListenerConfig(t, certPath, keyPath))
	r := startRelay(t, cfg)
	tlsPort := int(r.TCPAddrs()[1].Port())
	peerPort := freePortPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	peer := exec.CommandContext(ctx, peerBin, "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		peer.Process.Kill()
		peer.Wait()
	})
	// turnutils_peer must listen before uclient sends: on a busy machine
	// starting it can take longer than any fixed sleep.
	testutil.WaitUDPBound(t, peerPort, 15*time.Second)

	for _, tc := range []struct {
		name  string
		flags []string
		port  int
	}{
		{"udp channels", []string{"-c"}, int(r.udp.Port())},
		{"udp send indications", []string{"-c", "-s"}, int(r.udp.Port())},
		{"udp with rtcp pairs", nil, int(r.udp.Port())},
		{"tcp channels", []string{"-t", "-c"}, int(r.tcp.Port())},
		{"tcp send indications", []string{"-t", "-c", "-s"}, int(r.tcp.Port())},
		{"tls channels", []string{"-t", "-S", "-c"}, tlsPort},
		{"tls send indications", []string{"-t", "-S", "-c", "-s"}, tlsPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-u", testUser, "-w", testPass, "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
				"-m", "2", "-n", "50", "-l", "160", "-z", "5", "-p", strconv.Itoa(tc.port)}, tc.flags...)
			args = append(args, "127.0.0.1")
			tctx, tcancel := context.WithTimeout(ctx, 40*time.Second)
			defer tcancel()
			out, err := exec.CommandContext(tctx, uclient, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("uclient %v: %v\n%s", args, err, tail(out))
			}
			m := lostRE.FindSubmatch(out)
			if m == nil {
				t.Fatalf("no loss figure in the output:\n%s", tail(out))
			}
			if lost, _ := strconv.Atoi(string(m[1])); lost != 0 {
				t.Errorf("%d packets lost:\n%s", lost, tail(out))
			}
			recv := recvRE.FindAllSubmatch(out, -1)
			if len(recv) == 0 {
				t.Fatalf("no tot_recv_msgs in the output:\n%s", tail(out))
			}
			if n, _ := strconv.Atoi(string(recv[len(recv)-1][1])); n < 100 {
				t.Errorf("only %d messages came back, want 100:\n%s", n, tail(out))
			}
		})
	}
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
