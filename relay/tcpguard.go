package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Defences of the client TCP/TLS listeners: accept errors that pass,
// connection caps, and the deadline for authenticating.

// Backoff of temporary accept errors, as net/http's Server does it: 5 ms
// doubling up to 1 s.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Reasons a client connection was refused or closed: the bounded label
// values of mediaedge_relay_tcp_connections_refused_total.
const (
	tcpRefusedTotal  = "total_cap"
	tcpRefusedSource = "source_cap"
)

// temporaryAccept reports whether an accept error passes by itself: the
// process or the system is out of file descriptors (EMFILE, ENFILE) or
// buffers (ENOBUFS, ENOMEM), the client gave up before accept
// (ECONNABORTED), or a timeout. Accepting again later may succeed.
func temporaryAccept(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acceptBackoff returns the wait after a temporary accept error that
// followed a wait of prev.
func acceptBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		return acceptBackoffMin
	}
	return min(2*prev, acceptBackoffMax)
}

// acceptRetry counts and logs (at most a few lines a second) a temporary
// accept error the listener waits out.
func (s *Server) acceptRetry(t *tcpListener, err error, delay time.Duration) {
	s.metrics.acceptErrors.Inc()
	if s.acceptLog.allow() {
		s.log.Warn("TCP listener cannot accept for now; retrying", "transport", t.transport,
			"addr", t.addr.String(), "err", err, "retry_in", delay.String())
	}
}

// listenerFailed records that a client listener stopped accepting for
// good: the relay reports itself failed (GET /v1/status, /readyz).
func (s *Server) listenerFailed(t *tcpListener, err error) {
	s.log.Error("TCP listener stopped accepting connections", "transport", t.transport,
		"addr", t.addr.String(), "err", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure == nil {
		s.failure = fmt.Errorf("relay: %s listener %s stopped accepting: %w", t.transport, t.addr, err)
	}
}

// Health returns an error once the relay can no longer serve clients it
// should (a listener stopped accepting); the daemon's /readyz reports it.
// Safe for concurrent use.
func (s *Server) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// connLimiter counts the open client TCP/TLS connections of every
// listener, in total and per source address. Safe for concurrent use; the
// zero value is ready.
type connLimiter struct {
	mu    sync.Mutex
	total int
	bySrc map[netip.Addr]int
}

// admit counts a new connection from src, or returns why it is refused (0
// caps mean no cap).
func (l *connLimiter) admit(src netip.Addr, maxTotal, maxPerSource int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if maxTotal > 0 && l.total >= maxTotal {
		return tcpRefusedTotal
	}
	if maxPerSource > 0 && l.bySrc[src] >= maxPerSource {
		return tcpRefusedSource
	}
	if l.bySrc == nil {
		l.bySrc = map[netip.Addr]int{}
	}
	l.total++
	l.bySrc[src]++
	return ""
}

// release forgets a connection admit counted.
func (l *connLimiter) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.bySrc[src] - 1; n > 0 {
		l.bySrc[src] = n
	} else {
		delete(l.bySrc, src)
	}
}

// open returns the number of open connections.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// authExpired runs when a connection's authentication deadline passes: a
// connection on which no request authenticated is closed and counted.
func (c *clientConn) authExpired() {
	if c.authed.Load() {
		return
	}
	c.l.srv.metrics.tcpUnauth.Inc()
	c.Close()
}

// markAuthenticated lifts the authentication deadline of the client
// connection from src, if it is one of the TCP/TLS listeners'.
func (s *Server) markAuthenticated(src net.Addr) {
	ta, ok := src.(*net.TCPAddr)
	if !ok {
		return
	}
	ap := ta.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
	for _, l := range s.tcpLns {
		l.mu.Lock()
		c := l.byRemote[ap]
		l.mu.Unlock()
		if c != nil && !c.authed.Swap(true) {
			if tm := c.authTimer.Load(); tm != nil {
				tm.Stop()
			}
		}
	}
}

// onAuth is pion's OnAuth event: the authenticator counts failures, and a
// success on a TCP/TLS connection lifts its authentication deadline.
func (s *Server) onAuth(src, dst net.Addr, proto, username, realm, method string, verdict bool) {
	s.auth.onAuth(src, dst, proto, username, realm, method, verdict)
	if verdict {
		s.markAuthenticated(src)
	}
}
