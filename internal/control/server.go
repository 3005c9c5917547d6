// Package control is mediaedge's local control API: HTTP+JSON on a unix
// socket (the default) and optionally on a TCP address that requires a bearer
// token. Components register their routes on a Server; the daemon serves it.
package control

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MinTokenSize is the shortest bearer token the TCP listener accepts: a
// shorter one could be guessed.
const MinTokenSize = 16

// DefaultMaxLongPolls bounds the long polls served at the same time unless
// SetMaxLongPolls says otherwise.
const DefaultMaxLongPolls = 256

// Server is the control API. Routes are registered with Handle before Start;
// Start binds the listeners; Close stops serving and waits for in-flight
// requests up to the context's deadline. Handle and Start are safe for
// concurrent use with requests being served.
type Server struct {
	// set in New, never changed
	log   *slog.Logger
	mux   *http.ServeMux
	token []byte // bearer token for TCP; empty: TCP refused

	// long polls being served, their cap, and those refused over it
	longPolls    atomic.Int64
	maxLongPolls atomic.Int64
	pollsRefused prometheus.Counter

	mu        sync.Mutex
	listeners []net.Listener
	servers   []*http.Server
	socket    string // unix socket path to remove on Close
	wg        sync.WaitGroup
}

// NewServer returns a Server with no listeners. token is the bearer token
// required on TCP listeners (it is copied).
func NewServer(log *slog.Logger, token []byte) *Server {
	s := &Server{log: log, mux: http.NewServeMux(), token: append([]byte(nil), token...),
		pollsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_control_long_polls_refused_total",
			Help: "Long polls (e.g. GET /v1/gateway/events?wait=) refused with 503 because the cap of concurrent long polls was reached.",
		})}
	s.maxLongPolls.Store(DefaultMaxLongPolls)
	return s
}

// RegisterMetrics registers the control API's metrics with reg.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(s.pollsRefused)
}

// SetMaxLongPolls sets the cap of long polls served at the same time; 0
// means no cap. Safe for concurrent use.
func (s *Server) SetMaxLongPolls(n int) { s.maxLongPolls.Store(int64(n)) }

// HandleLongPoll registers h for pattern as a long poll: a request that
// may wait for events. At most SetMaxLongPolls of them are served at the
// same time (each holds a goroutine, a connection and its buffers); more
// get 503 with Retry-After and are counted.
func (s *Server) HandleLongPoll(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		n := s.longPolls.Add(1)
		defer s.longPolls.Add(-1)
		if max := s.maxLongPolls.Load(); max > 0 && n > max {
			s.pollsRefused.Inc()
			w.Header().Set("Retry-After", "1")
			WriteError(w, http.StatusServiceUnavailable, CodeUnavailable, "too many long polls in progress; retry later")
			return
		}
		h(w, r)
	})
}

// Handle registers h for pattern (net/http ServeMux syntax, e.g.
// "GET /v1/relay/allocations"). Registering the same pattern twice panics,
// as with http.ServeMux: it is a programming error.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFunc registers f for pattern.
func (s *Server) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	s.mux.HandleFunc(pattern, f)
}

// ServeHTTP serves the registered routes directly (for tests).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler(false).ServeHTTP(w, r) }

// ListenUnix serves on a unix socket at path with the given mode. A stale
// socket file left by a crash is removed; a socket that answers is a running
// daemon, and ListenUnix refuses to steal it.
func (s *Server) ListenUnix(path string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("control: creating %s: %w", filepath.Dir(path), err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("control: %s is in use by a running process", path)
	}
	_ = os.Remove(path)
	// Bind under a restrictive umask-equivalent: create, then chmod before
	// serving. The directory (the runtime directory, 0750) is what keeps
	// others out in the meantime.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control: listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return fmt.Errorf("control: chmod %s: %w", path, err)
	}
	s.mu.Lock()
	s.socket = path
	s.mu.Unlock()
	s.serve(ln, false)
	return nil
}

// ListenTCP serves on a TCP address. Every request must carry
// "Authorization: Bearer <token>"; without a configured token ListenTCP
// refuses to start.
func (s *Server) ListenTCP(addr string) (net.Addr, error) {
	if len(s.token) == 0 {
		return nil, errors.New("control: a TCP listener needs a bearer token file")
	}
	if len(s.token) < MinTokenSize {
		return nil, fmt.Errorf("control: the bearer token is shorter than %d bytes", MinTokenSize)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("control: listening on %s: %w", addr, err)
	}
	s.serve(ln, true)
	return ln.Addr(), nil
}

func (s *Server) serve(ln net.Listener, auth bool) {
	hs := &http.Server{
		Handler:           s.handler(auth),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}

func (s *Server) handler(auth bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mediaedge"`)
			WriteError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		if _, pattern := s.mux.Handler(r); pattern == "" {
			if allow := s.allowed(r); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				WriteError(w, http.StatusMethodNotAllowed, CodeMethod, r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allow, ", "))
				return
			}
			WriteError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// methods are those allowed checks for a path registered with another.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// allowed returns the methods registered for r's path, for a 405 answer.
func (s *Server) allowed(r *http.Request) []string {
	var out []string
	for _, m := range methods {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := s.mux.Handler(r2); pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// authorized checks the bearer token. The scheme name is case-insensitive
// (RFC 7235 section 2.1): "bearer" and "BEARER" are "Bearer".
func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), s.token) == 1
}

// Close stops every listener, waits for in-flight requests until ctx ends,
// and removes the unix socket. It is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.servers, s.listeners = nil, nil
	sock := s.socket
	s.socket = ""
	s.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	if sock != "" {
		_ = os.Remove(sock)
	}
	return errors.Join(errs...)
}
