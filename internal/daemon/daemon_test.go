package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/control"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

func TestStartStatusCloseNoLeak(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	var logs syncBuffer
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
	var logs syncBuffer
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
