package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type item struct {
	Name string `json:"name"`
}

func newTestServer(t *testing.T, token string) *Server {
	t.Helper()
	s := NewServer(slog.New(slog.DiscardHandler), []byte(token))
	s.HandleFunc("GET /v1/items/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "missing" {
			WriteError(w, http.StatusNotFound, CodeNotFound, "no item missing")
			return
		}
		WriteJSON(w, http.StatusOK, item{Name: r.PathValue("name")})
	})
	s.HandleFunc("POST /v1/items", func(w http.ResponseWriter, r *http.Request) {
		var it item
		if !DecodeJSON(w, r, &it) {
			return
		}
		WriteJSON(w, http.StatusCreated, it)
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func TestUnixSocket(t *testing.T) {
	s := newTestServer(t, "")
	sock := filepath.Join(t.TempDir(), "run", "me.sock")
	if err := s.ListenUnix(sock, 0o660); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, want srw-rw----", fi.Mode())
	}
	// A second daemon must not steal a live socket.
	other := NewServer(slog.New(slog.DiscardHandler), nil)
	if err := other.ListenUnix(sock, 0o660); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second ListenUnix = %v, want 'in use'", err)
	}

	c := NewClient(sock, "")
	defer c.Close()
	ctx := context.Background()
	var got item
	if err := c.Do(ctx, "GET", "/v1/items/a", nil, &got); err != nil || got.Name != "a" {
		t.Fatalf("GET = %+v, %v", got, err)
	}
	if err := c.Do(ctx, "POST", "/v1/items", item{Name: "b"}, &got); err != nil || got.Name != "b" {
		t.Fatalf("POST = %+v, %v", got, err)
	}
	var ae *APIError
	err = c.Do(ctx, "GET", "/v1/items/missing", nil, nil)
	if !errors.As(err, &ae) || ae.Code != CodeNotFound || ae.Status != 404 {
		t.Fatalf("missing item: %v", err)
	}
	err = c.Do(ctx, "GET", "/v1/nothing", nil, nil)
	if !errors.As(err, &ae) || ae.Code != CodeNotFound || !strings.Contains(ae.Message, "no such endpoint") {
		t.Fatalf("unknown route: %v", err)
	}
	err = c.Do(ctx, "POST", "/v1/items", map[string]any{"name": "x", "extra": 1}, nil)
	if !errors.As(err, &ae) || ae.Code != CodeBadRequest || !strings.Contains(ae.Message, "unknown field") {
		t.Fatalf("unknown field: %v", err)
	}
	ctx2, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Close(ctx2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Close: %v", err)
	}
}

func TestClientRelativeSocket(t *testing.T) {
	dir := t.TempDir()
	s := newTestServer(t, "")
	if err := s.ListenUnix(filepath.Join(dir, "c.sock"), 0o660); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, addr := range []string{"c.sock", "./c.sock", "unix:c.sock"} {
		c := NewClient(addr, "")
		var got item
		if err := c.Do(context.Background(), "GET", "/v1/items/r", nil, &got); err != nil || got.Name != "r" {
			t.Errorf("%s: %+v, %v", addr, got, err)
		}
		c.Close()
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "me.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, "")
	if err := s.ListenUnix(sock, 0o660); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
}

func TestTCPNeedsToken(t *testing.T) {
	s := newTestServer(t, "")
	if _, err := s.ListenTCP("127.0.0.1:0"); err == nil {
		t.Fatal("TCP listener started without a token")
	}
	short := newTestServer(t, "s3cret-token")
	if _, err := short.ListenTCP("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "shorter than 16 bytes") {
		t.Fatalf("12-byte token: %v, want refused", err)
	}
	s2 := newTestServer(t, "s3cret-token-0123")
	addr, err := s2.ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tok := range []string{"", "wrong", "s3cret-token-0123-longer"} {
		c := NewClient(addr.String(), tok)
		err := c.Do(ctx, "GET", "/v1/items/a", nil, nil)
		c.Close()
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != CodeUnauthorized {
			t.Errorf("token %q: %v, want 401 unauthorized", tok, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error leaks the token: %v", err)
		}
	}
	c := NewClient("http://"+addr.String(), "s3cret-token-0123")
	defer c.Close()
	var got item
	if err := c.Do(ctx, "GET", "/v1/items/z", nil, &got); err != nil || got.Name != "z" {
		t.Fatalf("with token: %+v, %v", got, err)
	}
}

func TestDecodeJSONLimits(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"empty":    {"", "empty request body"},
		"trailing": {`{"name":"a"} {}`, "trailing data"},
		"syntax":   {`{"name":`, "invalid JSON"},
		"too big":  {`{"name":"` + strings.Repeat("a", MaxBody) + `"}`, "invalid JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			var it item
			err := decodeStrict(strings.NewReader(tc.body), &it)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"name":"a"}`))
	f.Add([]byte(`{"name":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var it item
		_ = decodeStrict(strings.NewReader(string(data)), &it)
		var m map[string]any
		_ = decodeStrict(io.LimitReader(strings.NewReader(string(data)), 1<<16), &m)
	})
}

// TestBearerSchemeCaseInsensitive checks that the auth scheme is matched
// without regard to case (RFC 7235 section 2.1) and the token exactly.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	s := newTestServer(t, "s3cret-token-0123")
	h := s.handler(true)
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer s3cret-token-0123", 200},
		{"bearer s3cret-token-0123", 200},
		{"BEARER s3cret-token-0123", 200},
		{"Bearer  s3cret-token-0123 ", 200},
		{"Bearer S3CRET-TOKEN-0123", 401},
		{"Basic s3cret-token-0123", 401},
		{"Bearers3cret-token-0123", 401},
		{"", 401},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/v1/items/a", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		h.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.header, rec.Code, tc.want)
		}
	}
}

// TestMethodNotAllowed checks that a known path with the wrong method gets
// 405 with an Allow header, and an unknown path 404.
func TestMethodNotAllowed(t *testing.T) {
	s := newTestServer(t, "")
	for _, tc := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"DELETE", "/v1/items/a", 405, "GET, HEAD"},
		{"GET", "/v1/items", 405, "POST"},
		{"GET", "/v1/nothing", 404, ""},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.want, tc.allow)
		}
		if tc.want == 405 && !strings.Contains(rec.Body.String(), CodeMethod) {
			t.Errorf("%s %s: body %s", tc.method, tc.path, rec.Body.String())
		}
	}
}

// TestLongPollCap holds 3 long polls with a cap of 3 and checks that a
// fourth gets 503 with Retry-After and is counted, and that a slot frees
// once a poll ends.
func TestLongPollCap(t *testing.T) {
	s := newTestServer(t, "")
	s.SetMaxLongPolls(3)
	reg := prometheus.NewRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	s.HandleLongPoll("GET /v1/wait", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		WriteJSON(w, http.StatusOK, item{Name: "done"})
	})
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/wait", nil))
			codes <- rec.Code
		}()
	}
	for range 3 {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("long polls did not start")
		}
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/wait", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("fourth poll: %d Retry-After %q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if v := testutil.ToFloat64(s.pollsRefused); v != 1 {
		t.Errorf("refused = %v, want 1", v)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("held poll ended with %d", c)
		}
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/wait", nil))
	if rec.Code != 200 {
		t.Errorf("poll after the others ended: %d", rec.Code)
	}
}
