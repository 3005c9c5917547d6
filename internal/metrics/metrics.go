// Package metrics builds mediaedge's Prometheus registry and serves it with
// the health endpoints.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mediaedge/mediaedge/internal/buildinfo"
)

// Namespace prefixes every metric name: mediaedge_<component>_<thing>_<unit>.
const Namespace = "mediaedge"

// NewRegistry returns a registry holding the Go runtime, process and build
// information collectors, and mediaedge_build_info.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		buildInfo(),
	)
	return r
}

// buildInfo is the constant 1 labelled with the running binary's version,
// commit and Go version, the usual way to join a version to other series
// (`* on(instance) group_left(version) mediaedge_build_info`).
func buildInfo() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        Namespace + "_build_info",
		Help:        "Always 1; the labels name the running mediaedge's version, commit and Go version.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}

// Server serves /metrics, /healthz and /readyz. /healthz answers 200 while
// the process serves HTTP at all; /readyz answers 200 once SetReady(true) was
// called (every component started) and the check of SetCheck passes, and
// 503 otherwise, with the reason.
type Server struct {
	log *slog.Logger
	reg *prometheus.Registry

	ready    atomic.Bool
	check    atomic.Pointer[func() error]
	mu       sync.Mutex
	notReady string
	hs       *http.Server
	done     chan struct{}
}

// NewServer returns a Server for reg.
func NewServer(log *slog.Logger, reg *prometheus.Registry) *Server {
	s := &Server{log: log, reg: reg, notReady: "starting"}
	return s
}

// SetReady marks the daemon ready, or not ready with a reason.
func (s *Server) SetReady(ok bool, reason string) {
	s.mu.Lock()
	s.notReady = reason
	s.mu.Unlock()
	s.ready.Store(ok)
}

// SetCheck installs a health check that /readyz runs while the daemon is
// ready: an error makes it answer 503 with the error (a component that can
// no longer serve). It must be quick and safe for concurrent use.
func (s *Server) SetCheck(f func() error) { s.check.Store(&f) }

// notReadyReason returns why /readyz should fail, or "".
func (s *Server) notReadyReason() string {
	if s.ready.Load() {
		if f := s.check.Load(); f != nil {
			if err := (*f)(); err != nil {
				return err.Error()
			}
		}
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notReady
}

// Handler returns the HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		reason := s.notReadyReason()
		if reason == "" {
			fmt.Fprintln(w, "ready")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:", reason)
	})
	return mux
}

// Listen binds addr and serves in the background. It returns the bound
// address (useful with port 0).
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listening on %s: %w", addr, err)
	}
	s.hs = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Close stops serving, waiting for in-flight scrapes until ctx ends. It is
// idempotent.
func (s *Server) Close(ctx context.Context) error {
	if s.hs == nil {
		return nil
	}
	err := s.hs.Shutdown(ctx)
	if err != nil {
		s.hs.Close()
	}
	<-s.done
	s.hs = nil
	return err
}
