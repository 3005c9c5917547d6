package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/report"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestRelayHopEndToEnd is a short tools/perf/relay-hop.sh: 1,000
// allocations through the daemon's relay on loopback and the same 1,000
// sockets straight to the echo peer, both verified packet by packet and
// both with the machine's CPU per round trip, so that the hop's cost can
// be computed. The relay runs alone (no gateway) so that no fixed port
// range of the shared machine stands in the way.
func TestRelayHopEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the daemon")
	}
	bin := testutil.BuildMediaedge(t)
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("bench:benchpass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mediaedge.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`log:
  level: warn
metrics:
  listen: ""
control:
  socket: %s
gateway:
  enabled: false
policy:
  enabled: false
relay:
  enabled: true
  realm: bench.local
  listeners:
    - transport: udp
      addr: 127.0.0.1:%d
  relay_ip: 127.0.0.1
  ports: 16000-19999
  allowed_peers: [127.0.0.0/8]
  auth:
    users_file: %s
    generate_user: ""
  limits:
    max_allocations_per_user: 2000
    challenges_per_source: 0
`, filepath.Join(dir, "control.sock"), port, users)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := sut.StartProcess(dir, "mediaedge", -1, bin, "run", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	if err := p.WaitReady(15*time.Second, func() error { return stunPing(server) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n, per, rate = 1000, 2, 4000
	through, err := load.RunTURN(ctx, load.TURNOptions{Target: "mediaedge relay", Server: server, Username: "bench",
		Password: "benchpass", PID: p.PID(), Allocations: n, Count: per, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := load.RunTURN(ctx, load.TURNOptions{Direct: true, Allocations: n, Count: per, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	for _, rep := range []*report.Report{through, direct} {
		var buf bytes.Buffer
		rep.WriteTable(&buf)
		t.Log("\n" + buf.String())
		if d := rep.Directions[0]; !rep.OK() || d.Streams != n || d.Received != n*per || rep.Machine == nil {
			t.Fatalf("%s: not every round trip of %d allocations verified, or no machine figure", rep.Target, n)
		}
	}
	if through.SUT == nil || through.SUT.PID != p.PID() {
		t.Errorf("no server CPU for the run through the relay: %+v", through.SUT)
	}
	hop, err := report.HopUS(through, direct)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("relay hop %.2f µs per round trip (machine %.2f through the relay, %.2f direct; a shared machine: indicative)",
		hop, through.Machine.USPerRoundTrip, direct.Machine.USPerRoundTrip)
}
