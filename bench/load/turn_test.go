package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/bench/report"
)

// startTURN runs a stock pion/turn server on loopback with the user
// bench/benchpass (or REST credentials with secret when it is set).
func startTURN(t *testing.T, secret string) netip.AddrPort {
	t.Helper()
	return startTURNQuota(t, secret, nil)
}

// startTURNQuota is startTURN with pion's quota handler.
func startTURNQuota(t *testing.T, secret string, quota turn.QuotaHandler) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	key := turn.GenerateAuthKey("bench", "bench.test", "benchpass")
	auth := func(ra *turn.RequestAttributes) (string, []byte, bool) {
		return ra.Username, key, ra.Username == "bench"
	}
	if secret != "" {
		auth = turn.LongTermTURNRESTAuthHandler(secret, lf.NewLogger("turn"))
	}
	s, err := turn.NewServer(turn.ServerConfig{
		Realm:         "bench.test",
		AuthHandler:   auth,
		QuotaHandler:  quota,
		LoggerFactory: lf,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestRunTURNChannels(t *testing.T) {
	for _, goroutines := range []bool{false, true} {
		t.Run(fmt.Sprintf("goroutine readers %v", goroutines), func(t *testing.T) { testRunTURNChannels(t, goroutines) })
	}
}

func testRunTURNChannels(t *testing.T, goroutines bool) {
	srv := startTURN(t, "")
	var status strings.Builder
	rep, err := RunTURN(context.Background(), TURNOptions{Target: "pion", Server: srv, Username: "bench", Password: "benchpass",
		Allocations: 3, Count: 200, Rate: 1500, MaxTime: 20 * time.Second, Status: &status, goroutines: goroutines})
	if err != nil {
		t.Fatal(err)
	}
	// The set-up, seconds for many allocations, is not silent.
	if !strings.Contains(status.String(), "setting up 3 allocation(s)") || !strings.Contains(status.String(), "3 allocation(s) ready in") {
		t.Errorf("status lines:\n%s", status.String())
	}
	d := rep.Directions[0]
	if d.Streams != 3 || d.Sent != 600 || d.Received != 600 || d.Lost != 0 || d.Failed() != 0 {
		var b strings.Builder
		rep.WriteTable(&b)
		t.Fatalf("channel run:\n%s", b.String())
	}
	if d.Latency.Count != 600 || d.Latency.P50 <= 0 {
		t.Errorf("latency %+v", d.Latency)
	}
}

func TestRunTURNIndicationsWindow(t *testing.T) {
	srv := startTURN(t, "")
	rep, err := RunTURN(context.Background(), TURNOptions{Server: srv, Username: "bench", Password: "benchpass",
		Indications: true, Count: 300, Window: 16, MaxTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Directions[0]; d.Sent != 300 || d.Received != 300 || !strings.Contains(d.Name, "indication") {
		t.Fatalf("indication run: %+v", d)
	}
}

func TestRunTURNRESTCredentials(t *testing.T) {
	srv := startTURN(t, "s3cret")
	rep, err := RunTURN(context.Background(), TURNOptions{Server: srv, Username: "alice", Secret: "s3cret",
		Count: 50, Rate: 2000, MaxTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Directions[0]; d.Received != 50 {
		t.Fatalf("REST credentials run: %+v", d)
	}
}

func TestRunTURNWrongPassword(t *testing.T) {
	srv := startTURN(t, "")
	start := time.Now()
	// 200 allocations: the set-up gives up after the first few refusals
	// instead of trying them all.
	_, err := RunTURN(context.Background(), TURNOptions{Server: srv, Username: "bench", Password: "wrong", Allocations: 200,
		SetupConcurrency: 4, Count: 10, Rate: 100, SetupTimeout: 2 * time.Second, MaxTime: 20 * time.Second})
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	if !strings.Contains(err.Error(), "no allocation could be set up") || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("error: %v", err)
	}
	if time.Since(start) > 8*time.Second {
		t.Errorf("failure took %v", time.Since(start))
	}
	t.Log(err)
}

// TestRunTURNSetupFailuresCounted: allocations the server refuses are
// counted and reported; the run measures the others.
func TestRunTURNSetupFailuresCounted(t *testing.T) {
	var granted atomic.Int32
	srv := startTURNQuota(t, "", func(string, string, net.Addr) bool { return granted.Add(1) <= 3 })
	rep, err := RunTURN(context.Background(), TURNOptions{Server: srv, Username: "bench", Password: "benchpass",
		Allocations: 5, Count: 50, Rate: 1000, SetupTimeout: 2 * time.Second, MaxTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	d := rep.Directions[0]
	if rep.SetupFailed != 2 || d.Streams != 3 || d.Received != 150 || rep.OK() {
		t.Fatalf("setup failed %d, streams %d, received %d, OK %v:\n%s", rep.SetupFailed, d.Streams, d.Received, rep.OK(), b.String())
	}
	if !strings.Contains(b.String(), "set-up failed for 2 of 5 allocations: 2x allocate:") || !strings.Contains(b.String(), "486") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestRunTURNDirect: the baseline path, the same sockets straight to the
// echo peer, with the machine's CPU per round trip.
func TestRunTURNDirect(t *testing.T) {
	rep, err := RunTURN(context.Background(), TURNOptions{Direct: true, Allocations: 50, Count: 20, Rate: 2000,
		MaxTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.WriteTable(&b)
	d := rep.Directions[0]
	if rep.Mode != report.ModeDirect || d.Streams != 50 || d.Sent != 1000 || d.Received != 1000 || !rep.OK() || d.Unknown != 0 {
		t.Fatalf("direct run:\n%s", b.String())
	}
	if rep.Machine == nil || rep.Machine.CPUs < 1 || rep.Machine.WallSeconds <= 0 {
		t.Fatalf("machine figures %+v", rep.Machine)
	}
	if rep.Bench == nil || rep.Bench.PID != os.Getpid() {
		t.Fatalf("bench's own figures %+v", rep.Bench)
	}
	if !strings.Contains(b.String(), "µs per round trip") {
		t.Errorf("table without the machine line:\n%s", b.String())
	}
	if _, err := RunTURN(context.Background(), TURNOptions{Direct: true, Indications: true, Count: 1}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("--direct with indications: %v", err)
	}
}

func TestRESTCredentials(t *testing.T) {
	// draft-uberti-behave-turn-rest: password = base64(HMAC-SHA1(secret,
	// username)); checked against pion's own generator's format.
	u, p := restCredentials("secret", "alice", time.Hour)
	if !strings.HasSuffix(u, ":alice") || len(p) != 28 {
		t.Fatalf("%q %q", u, p)
	}
}

func TestTURNErrorHint(t *testing.T) {
	peer := netip.MustParseAddrPort("127.0.0.1:40000")
	for _, tc := range []struct {
		name    string
		in      error
		want    string
		refused bool
	}{
		{"forbidden peer", errors.New("create permission: (error 403: )"), "allow-loopback-peers", true},
		{"wrong password", errors.New("allocate: (error 401: )"), "wrong user, password or realm", true},
		{"unanswered allocate", fmt.Errorf("allocate: %w", context.DeadlineExceeded), "relay.limits.challenges_per_source", false},
		{"other", errors.New("first send to 127.0.0.1:40000: boom"), "boom", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := turnErrorHint(tc.in, peer)
			if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.in) {
				t.Errorf("hint %q does not say %q or lost the cause", err, tc.want)
			}
			if errors.Is(err, errRefused) != tc.refused {
				t.Errorf("%q: refused %v, want %v", err, errors.Is(err, errRefused), tc.refused)
			}
		})
	}
}
