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
	"time"
)

// Server is the control API. Routes are registered with Handle before Start;
// Start binds the listeners; Close stops serving and waits for in-flight
// requests up to the context's deadline. Handle and Start are safe for
// concurrent use with requests being served.
type Server struct {
	// set in New, never changed
	log   *slog.Logger
	mux   *http.ServeMux
	token []byte // bearer token for TCP; empty: TCP refused

	mu        sync.Mutex
	listeners []net.Listener
	servers   []*http.Server
	socket    string // unix socket path to remove on Close
	wg        sync.WaitGroup
}

// NewServer returns a Server with no listeners. token is the bearer token
// required on TCP listeners (it is copied).
func NewServer(log *slog.Logger, token []byte) *Server {
	s := &Server{log: log, mux: http.NewServeMux(), token: append([]byte(nil), token...)}
	return s
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
			WriteError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
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
