package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/steer"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// refuseSteering stands in for a kernel or process that cannot steer.
func refuseSteering() (*steer.Steerer, error) {
	return nil, fmt.Errorf("%w: loading program: operation not permitted (needs CAP_BPF and CAP_NET_ADMIN)", steer.ErrUnsupported)
}

// startWith starts a gateway for cfg whose steering program refuses (when
// refuse is set), logging into log; it returns Start's error.
func startWith(t *testing.T, cfg Config, refuse bool, log *testutil.SyncBuffer) (*Gateway, error) {
	t.Helper()
	g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if refuse {
		g.newSteerer = refuseSteering
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = g.Start(ctx)
	t.Cleanup(func() { g.Close() })
	return g, err
}

// TestSteeringAutoFallsBack: where steering cannot run, auto logs once
// why and dedicated calls work as without it; on refuses to start and
// says why; off never tries.
func TestSteeringAutoFallsBack(t *testing.T) {
	cfg := testConfig()
	cfg.Internal.PortMode, cfg.Cloud.PortMode = PortsDedicated, PortsDedicated

	var log testutil.SyncBuffer
	cfg.Steering = SteeringAuto
	g, err := startWith(t, cfg, true, &log)
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	if n := strings.Count(log.String(), "steering unavailable"); n != 1 {
		t.Errorf("auto logged %d times that steering is unavailable, want once:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "CAP_BPF") {
		t.Errorf("the log does not say why:\n%s", log.String())
	}
	if g.steer != nil || g.metrics.steering.Load() || g.Status().Steering {
		t.Error("steering active after the program was refused")
	}
	for i := 0; i < 3; i++ {
		c := newCall(t, g, suiteAES128SHA80, suiteAEAD128, true)
		c.exchange(t, 3, uint32(0x300+i))
	}
	if n := strings.Count(log.String(), "steering unavailable"); n != 1 {
		t.Errorf("logged %d times after calls, want once", n)
	}
	on := cfg
	on.Steering = SteeringOn
	if err := g.Reload(context.Background(), on); err != nil {
		t.Fatal(err)
	}
	if got := g.cfg.Load().Steering; got != SteeringAuto || !strings.Contains(log.String(), "gateway.steering changes need a restart") {
		t.Errorf("a reload changed steering to %q without a restart (or did not say so)", got)
	}

	cfg.Steering = SteeringOn
	_, err = startWith(t, cfg, true, &testutil.SyncBuffer{})
	if !errors.Is(err, errSteeringOn) || !errors.Is(err, steer.ErrUnsupported) || !strings.Contains(err.Error(), "CAP_BPF") {
		t.Errorf("on where steering cannot run: Start = %v, want a clear refusal", err)
	}

	cfg.Steering = SteeringOff
	tried := false
	g2, err := New(cfg, component.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	g2.newSteerer = func() (*steer.Steerer, error) { tried = true; return refuseSteering() }
	if err := g2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if tried {
		t.Error("off loaded the steering program")
	}
}

// TestSteeringOnlyForDedicatedPorts: auto loads nothing when no port can
// be dedicated (both legs shared, no ng listener); on still does.
func TestSteeringOnlyForDedicatedPorts(t *testing.T) {
	cfg := testConfig()
	cfg.Internal.PortMode, cfg.Cloud.PortMode = PortsShared, PortsShared
	cfg.NG.Listen, cfg.NG.ListenTCP = "", ""
	for _, tc := range []struct {
		mode SteeringMode
		ng   string
		want bool
	}{
		{SteeringAuto, "", false},
		{SteeringOn, "", true},
		{SteeringAuto, "127.0.0.1:0", true}, // ng calls get dedicated ports
	} {
		cfg.Steering, cfg.NG.Listen = tc.mode, tc.ng
		g, err := New(cfg, component.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		tried := false
		g.newSteerer = func() (*steer.Steerer, error) { tried = true; return refuseSteering() }
		_ = g.Start(context.Background())
		g.Close()
		if tried != tc.want {
			t.Errorf("steering %s, ng listen %q: loaded the program %v, want %v", tc.mode, tc.ng, tried, tc.want)
		}
	}
}

func TestSteeringConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Steering = "sometimes"
	if _, err := New(cfg, component.Deps{}); err == nil || !strings.Contains(err.Error(), "steering") {
		t.Errorf("steering: sometimes accepted: %v", err)
	}
	if got := DefaultConfig().Steering; got != SteeringAuto {
		t.Errorf("default steering %q, want auto", got)
	}
}

const noCapsChildEnv = "MEDIAEDGE_GATEWAY_NOCAPS_CHILD"

// TestSteeringWithoutCapabilities runs the fallback for real: a copy of
// this test binary whose capability bounding set lacks CAP_BPF,
// CAP_SYS_ADMIN, CAP_PERFMON and CAP_NET_ADMIN (setpriv) starts a gateway
// with dedicated ports: auto logs once why it cannot steer and calls
// work; on refuses to start, naming the capabilities.
func TestSteeringWithoutCapabilities(t *testing.T) {
	if os.Getenv(noCapsChildEnv) == "1" {
		cfg := testConfig()
		cfg.Internal.PortMode, cfg.Cloud.PortMode = PortsDedicated, PortsDedicated
		var log testutil.SyncBuffer
		g, err := startWith(t, cfg, false, &log)
		if err != nil {
			t.Fatalf("auto without capabilities: %v", err)
		}
		if n := strings.Count(log.String(), "steering unavailable"); n != 1 || !strings.Contains(log.String(), "CAP_BPF") {
			t.Errorf("logged %d times why steering is unavailable, want once naming CAP_BPF:\n%s", n, log.String())
		}
		c := newCall(t, g, suiteAES128SHA80, suiteAEAD128, true)
		c.exchange(t, 3, 0x900)
		cfg.Steering = SteeringOn
		if _, err := startWith(t, cfg, false, &testutil.SyncBuffer{}); !errors.Is(err, errSteeringOn) || !strings.Contains(err.Error(), "CAP_BPF") {
			t.Errorf("on without capabilities: Start = %v, want a refusal naming CAP_BPF", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop capabilities from")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (apt-get install util-linux)")
	}
	cmd := exec.Command("setpriv", "--bounding-set=-bpf,-sys_admin,-perfmon,-net_admin", "--inh-caps=-all",
		os.Args[0], "-test.run=^TestSteeringWithoutCapabilities$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), noCapsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
