package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	s := NewServer(slog.New(slog.DiscardHandler), NewRegistry())
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Errorf("readyz before ready = %d %q", code, body)
	}
	s.SetReady(true, "")
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("readyz when ready = %d", code)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "go_build_info") || !strings.Contains(body, "process_") {
		t.Errorf("metrics = %d, missing runtime/build/process collectors", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestReadyzFailsOnCheck checks that /readyz answers 503 with the check's
// error while the daemon is otherwise ready (a component that can no longer
// serve), and 200 again once the check passes.
func TestReadyzFailsOnCheck(t *testing.T) {
	s := NewServer(slog.New(slog.DiscardHandler), NewRegistry())
	s.SetReady(true, "")
	var failure atomic.Pointer[string]
	s.SetCheck(func() error {
		if p := failure.Load(); p != nil {
			return errors.New(*p)
		}
		return nil
	})
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := readyz(); code != 200 {
		t.Fatalf("healthy: %d %q", code, body)
	}
	msg := "relay: tcp listener 127.0.0.1:3478 stopped accepting"
	failure.Store(&msg)
	if code, body := readyz(); code != 503 || !strings.Contains(body, msg) {
		t.Errorf("failed check: %d %q", code, body)
	}
	failure.Store(nil)
	if code, body := readyz(); code != 200 {
		t.Errorf("recovered: %d %q", code, body)
	}
}
