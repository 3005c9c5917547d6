package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig returns a configuration bound to loopback with every listener
// on an ephemeral port or in dir.
func testConfig(t *testing.T, dir string) Config {
	t.Helper()
	cfg, err := Parse([]byte("metrics:\n  listen: 127.0.0.1:0\ncontrol:\n  socket: "+filepath.Join(dir, "me.sock")+"\n"), dir, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestDefaultYAMLIsValid(t *testing.T) {
	if _, err := Load("", config.Options{}); err != nil {
		t.Fatalf("embedded default does not load:\n%v", err)
	}
	for _, section := range []string{"\nlog:", "\nmetrics:", "\ncontrol:", "\nrelay:", "\ngateway:", "\npolicy:"} {
		if !strings.Contains(DefaultYAML(), section) {
			t.Errorf("embedded default lacks the %s section", strings.TrimSpace(section))
		}
	}
}

// TestExampleConfigIsValid keeps the production example that make install
// ships in step with the configuration schema.
func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := Load("../systemd/mediaedge.yaml", config.Options{SkipSecrets: true})
	if err != nil {
		t.Fatalf("systemd/mediaedge.yaml:\n%v", err)
	}
	if !cfg.Relay.Enabled || !cfg.Gateway.Enabled || !cfg.Policy.Enabled || cfg.Policy.Mode != "enforce" {
		t.Errorf("the example should run every component with policy enforced")
	}
}

func TestMarksMustMatchPolicy(t *testing.T) {
	base := "policy:\n  enabled: true\n  mode: enforce\n  uplink: {interface: wan0}\n"
	tests := []struct {
		name, in string
		want     []string
	}{
		{"all equal", base + "  mark: 0x4d45\nrelay:\n  mark: 0x4d45\ngateway:\n  cloud:\n    mark: 0x4d45\n", nil},
		{"relay differs", base + "  mark: 0x4d45\nrelay:\n  enabled: true\n  mark: 0x1\ngateway:\n  cloud:\n    mark: 0x4d45\n",
			[]string{"relay.mark: 0x1 differs from policy.mark 0x4d45: relayed media would not be routed via the direct uplink (line 8)"}},
		{"gateway unset", base + "  mark: 0x4d45\nrelay:\n  mark: 0x4d45\ngateway:\n  enabled: true\n",
			[]string{"gateway.cloud.mark: 0x0 differs from policy.mark 0x4d45: the cloud leg would not be routed via the direct uplink"}},
		{"policy unmarked", base + "  mark: 0\ngateway:\n  enabled: true\n",
			[]string{"policy.mark: 0 while split-tunnel policy is enforced"}},
		{"plan mode does not care", "relay:\n  mark: 0x1\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), t.TempDir(), config.Options{})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if len(tc.want) == 0 {
				if err != nil && strings.Contains(got, "mark") {
					t.Fatalf("unexpected mark problem: %v", err)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems:\n%s\nwant one containing %q", got, w)
				}
			}
		})
	}
}

func TestStartStatusCloseNoLeak(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	var logs testutil.SyncBuffer
	d, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := control.NewClient(cfg.Control.SocketPath(), "")
	var st StatusReport
	if err := c.Do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.ConfigFile != "(embedded default)" || st.UptimeSeconds <= 0 || len(st.Components) != 3 {
		t.Errorf("status = %+v", st)
	}
	resp, err := http.Get("http://" + d.MetricsAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("readyz = %d after Start", resp.StatusCode)
	}
	c.Close()
	http.DefaultClient.CloseIdleConnections()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(cfg.Control.SocketPath()); !os.IsNotExist(err) {
		t.Errorf("control socket left behind")
	}
	goleak.VerifyNone(t)
}

func TestReloadAppliesLevel(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	var logs testutil.SyncBuffer
	lv := new(slog.LevelVar)
	d, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: lv})), LevelVar: lv})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	next := cfg
	next.Log.Level = "debug"
	next.Metrics.Listen = "127.0.0.1:1"
	if err := d.Reload(ctx, next); err != nil {
		t.Fatal(err)
	}
	if lv.Level() != slog.LevelDebug {
		t.Errorf("level after reload = %v", lv.Level())
	}
	if !strings.Contains(logs.String(), "metrics address changes need a restart") {
		t.Errorf("no warning about the metrics address:\n%s", logs.String())
	}
	if d.Config().Log.Level != "debug" {
		t.Error("Config() not updated")
	}
}

func TestStartFailureReported(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	// Occupy the metrics port so that Start fails after the control API.
	first, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	cfg2 := cfg
	cfg2.Control.Socket = filepath.Join(dir, "other.sock")
	cfg2.Metrics.Listen = first.MetricsAddr().String()
	second, err := New(cfg2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "metrics: listening on") {
		t.Fatalf("Start = %v, want a metrics bind error", err)
	}
	if err := second.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg2.Control.Socket); !os.IsNotExist(err) {
		t.Errorf("failed start left its control socket behind")
	}
}

// TestShortControlTokenRefused checks that a bearer token shorter than 16
// bytes is refused when the configuration is loaded, naming the file and
// never the token.
func TestShortControlTokenRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		token string
		ok    bool
	}{
		{"short-tok", false},
		{"0123456789abcde", false},
		{"0123456789abcdef", true},
	} {
		tok := filepath.Join(dir, "token")
		if err := os.WriteFile(tok, []byte(tc.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		yml := "control:\n  tcp_listen: 127.0.0.1:0\n  token_file: " + tok + "\n"
		_, err := Parse([]byte(yml), dir, config.Options{})
		if tc.ok {
			if err != nil {
				t.Errorf("%d-byte token refused: %v", len(tc.token), err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "shorter than 16 bytes") || !strings.Contains(err.Error(), tok) {
			t.Errorf("%d-byte token: err = %v", len(tc.token), err)
		}
		if err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("error shows the token: %v", err)
		}
	}
}
