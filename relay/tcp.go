package relay

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// Timeouts of client TCP/TLS connections: a connection must send its first
// message within firstFrameTimeout (which bounds TLS handshakes too), and
// may then stay silent up to idleTimeout (longer than the longest
// allocation lifetime pion grants, one hour, so refreshes always fit).
const (
	firstFrameTimeout = 30 * time.Second
	idleTimeout       = 65 * time.Minute
	// maxSTUNOverTCP bounds a STUN message on a stream; real ones are a
	// few hundred bytes.
	maxSTUNOverTCP = 8 << 10
)

// tcpListener is a client-facing TCP or TLS listener as pion sees it. It
// refuses clients outside allowed_clients, tracks its connections so that
// Close can end them (pion closes the listener only), and wraps each in a
// clientConn. Safe for concurrent use.
type tcpListener struct {
	// set in listenTCP, never changed
	srv       *Server
	ln        net.Listener
	addr      netip.AddrPort
	transport string // tcp or tls
	tlsConf   *tls.Config
	cert      atomic.Pointer[tls.Certificate]
	certFile  string
	done      chan struct{} // closed by Close: ends an accept backoff
	closing   atomic.Bool

	mu       sync.Mutex
	conns    map[*clientConn]struct{}
	byRemote map[netip.AddrPort]*clientConn
	closed   bool
}

func (s *Server) listenTCP(ctx context.Context, l ListenerConfig, lo sockopt.Options) (*tcpListener, error) {
	lo.ReusePort = false
	ln, err := lo.ListenConfig().Listen(ctx, "tcp", l.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("relay: listening on %s %s: %w", l.Transport, l.Addr, err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	t := &tcpListener{
		srv:       s,
		ln:        ln,
		addr:      netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		transport: string(l.Transport),
		certFile:  l.CertFile,
		done:      make(chan struct{}),
		conns:     map[*clientConn]struct{}{},
		byRemote:  map[netip.AddrPort]*clientConn{},
	}
	if l.Transport == TransportTLS {
		if err := t.loadCert(l); err != nil {
			ln.Close()
			return nil, err
		}
		t.tlsConf = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return t.cert.Load(), nil
			},
		}
	}
	s.tcpLns = append(s.tcpLns, t)
	return t, nil
}

// loadCert (re)reads the certificate chain and key; connections already
// open keep the certificate they were made with.
func (t *tcpListener) loadCert(l ListenerConfig) error {
	certPEM, err := os.ReadFile(l.CertFile)
	if err != nil {
		return fmt.Errorf("relay: reading certificate: %w", err)
	}
	key := l.KeyFile.Bytes()
	if key == nil {
		return fmt.Errorf("relay: key file %s was not loaded", l.KeyFile)
	}
	c, err := tls.X509KeyPair(certPEM, key)
	if err != nil {
		// The tls error names no key material.
		return fmt.Errorf("relay: certificate %s with key %s: %w", l.CertFile, l.KeyFile, err)
	}
	t.cert.Store(&c)
	return nil
}

// Accept implements net.Listener for pion's accept loop, which ends on
// any error. Temporary errors are therefore retried here with a backoff
// (see acceptBackoff), so that running out of file descriptors once does
// not stop the listener for good; an error that is not temporary marks the
// relay failed (readiness) before pion sees it. Clients over the
// connection caps are closed at once and counted.
func (t *tcpListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.closing.Load() {
				return nil, net.ErrClosed
			}
			if temporaryAccept(err) {
				delay = acceptBackoff(delay)
				t.srv.acceptRetry(t, err, delay)
				select {
				case <-time.After(delay):
					continue
				case <-t.done:
					return nil, net.ErrClosed
				}
			}
			t.srv.listenerFailed(t, err)
			return nil, err
		}
		delay = 0
		ra, _ := addrPortOf(c.RemoteAddr())
		if !t.srv.policy.Load().Client(ra.Addr()) {
			t.srv.stats.drops[dropClientDenied].Add(1)
			c.Close()
			continue
		}
		lim := t.srv.limits.Load()
		if reason := t.srv.tcpConns.admit(ra.Addr(), lim.MaxTCPConnections, lim.MaxTCPConnectionsPerSource); reason != "" {
			t.srv.metrics.tcpRefused.WithLabelValues(reason).Inc()
			c.Close()
			continue
		}
		var inner net.Conn = c
		if t.tlsConf != nil {
			inner = tls.Server(c, t.tlsConf)
		}
		cc := &clientConn{Conn: inner, l: t, remote: ra, first: true}
		if d := lim.TCPAuthTimeout.D(); d > 0 {
			cc.authTimer.Store(time.AfterFunc(d, cc.authExpired))
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			cc.Close()
			return nil, net.ErrClosed
		}
		t.conns[cc] = struct{}{}
		t.byRemote[ra] = cc
		t.mu.Unlock()
		return cc, nil
	}
}

// Close implements net.Listener; pion calls it at shutdown.
func (t *tcpListener) Close() error {
	if t.closing.Swap(true) {
		return nil
	}
	close(t.done)
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	return t.ln.Close()
}

// Addr implements net.Listener.
func (t *tcpListener) Addr() net.Addr { return t.ln.Addr() }

// closeConns ends every accepted connection (at shutdown).
func (t *tcpListener) closeConns() {
	t.mu.Lock()
	cs := make([]*clientConn, 0, len(t.conns))
	for c := range t.conns {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// clientConn is a client's TCP/TLS connection. Its Read frames the stream
// (STUN messages and ChannelData, RFC 8656 section 12.5) so that the relay
// can inspect STUN requests before pion, as on UDP. One goroutine (pion's
// reader for this connection) reads; Close may be called from any.
type clientConn struct {
	net.Conn
	l      *tcpListener
	remote netip.AddrPort

	// readMu serialises Read. There is normally one reader, but after a
	// ConnectionBind pion reads the stream from a copy goroutine while its
	// read loop may already be calling Read again once the copy's
	// connection closed.
	readMu sync.Mutex

	// owned by the reader (under readMu)
	buf      [maxSTUNOverTCP + 64]byte
	start    int
	end      int
	pass     int       // bytes of the current ChannelData frame still to pass through
	first    bool      // no frame yet: the first-frame deadline applies
	deadline time.Time // the read deadline the reader set
	injOut   []byte    // the rest of an injected Connect being returned to pion
	injDone  *injected // the last injected Connect, checked once pion has handled it

	// Connect requests dialled in the background, waiting to go back into
	// the stream (see connectAsync)
	injMu sync.Mutex
	injQ  []injected

	// authTimer closes the connection unless a request on it authenticates
	// in time (limits.tcp_auth_timeout); authed is set once one did.
	authTimer atomic.Pointer[time.Timer]
	authed    atomic.Bool

	closeOnce sync.Once
}

// injected is a Connect request whose dial has finished.
type injected struct {
	raw []byte
	t   *tcpRelay
	pc  *pendingConnect
}

// inject queues a Connect request for pion and wakes the reader, which may
// be waiting for the client. Safe for concurrent use.
func (c *clientConn) inject(raw []byte, t *tcpRelay, pc *pendingConnect) {
	c.injMu.Lock()
	c.injQ = append(c.injQ, injected{raw: raw, t: t, pc: pc})
	c.injMu.Unlock()
	// The reader sets its deadline before it looks at injQ, so either it
	// sees the request or this deadline cuts its wait short.
	_ = c.Conn.SetReadDeadline(time.Now())
}

// popInjected takes the next injected request, if any.
func (c *clientConn) popInjected() (injected, bool) {
	c.injMu.Lock()
	defer c.injMu.Unlock()
	if len(c.injQ) == 0 {
		return injected{}, false
	}
	in := c.injQ[0]
	c.injQ = c.injQ[1:]
	if len(c.injQ) == 0 {
		c.injQ = nil
	}
	return in, true
}

func (c *clientConn) hasInjected() bool {
	c.injMu.Lock()
	defer c.injMu.Unlock()
	return len(c.injQ) > 0
}

var errBadFrame = errors.New("relay: stream is neither STUN nor ChannelData")

// Read implements net.Conn for pion's STUNConn. Each call returns bytes
// of one frame only, so frames that the relay puts back into the stream
// (Connect requests) never split another.
func (c *clientConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.injDone != nil && len(c.injOut) == 0 {
		// pion asks for more only once it has handled every whole frame
		// it got, the injected Connect included: if it did not take the
		// dialled connection (it refused the request), close it.
		c.injDone.t.drop(c.injDone.pc)
		c.injDone = nil
	}
	for {
		if c.pass > 0 && c.end > c.start {
			n := min(c.pass, c.end-c.start, len(p))
			copy(p, c.buf[c.start:c.start+n])
			c.start += n
			c.pass -= n
			return n, nil
		}
		if c.pass == 0 {
			if len(c.injOut) > 0 {
				n := copy(p, c.injOut)
				c.injOut = c.injOut[n:]
				return n, nil
			}
			if in, ok := c.popInjected(); ok {
				c.injOut, c.injDone = in.raw, &in
				continue
			}
		}
		if c.pass == 0 && c.end-c.start >= 4 {
			b := c.buf[c.start:c.end]
			switch b[0] >> 6 {
			case 1: // ChannelData: 4-byte header, length padded to 4
				ln := int(binary.BigEndian.Uint16(b[2:4]))
				c.pass = 4 + (ln+3)&^3
				continue
			case 0: // STUN: wait for the whole message, then inspect it
				if len(b) >= 20 {
					size := 20 + int(binary.BigEndian.Uint16(b[2:4]))
					if size > maxSTUNOverTCP {
						return 0, errBadFrame
					}
					if len(b) >= size {
						msg := b[:size]
						c.first = false
						if binary.BigEndian.Uint16(msg[0:2]) == typeConnectRequest && c.l.srv.connectAsync(c, msg) {
							c.start += size
							continue
						}
						if c.l.srv.inspect(msg, c.remote, c.l.addr, true, c.reply) {
							c.start += size
							continue
						}
						c.pass = size
						continue
					}
				}
			default:
				return 0, errBadFrame
			}
		}
		// Need more bytes.
		if c.start > 0 {
			c.end = copy(c.buf[:], c.buf[c.start:c.end])
			c.start = 0
		}
		if c.end == len(c.buf) {
			return 0, errBadFrame
		}
		d := idleTimeout
		if c.first {
			d = firstFrameTimeout
		}
		c.deadline = time.Now().Add(d)
		_ = c.Conn.SetReadDeadline(c.deadline)
		if c.pass == 0 && c.hasInjected() {
			continue
		}
		n, err := c.Conn.Read(c.buf[c.end:])
		c.end += n
		if err != nil && n == 0 {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(c.deadline) {
				continue // woken early by inject
			}
			return 0, err
		}
	}
}

func (c *clientConn) reply(b []byte) error {
	_, err := c.Conn.Write(b)
	return err
}

// Close implements net.Conn; it is idempotent.
func (c *clientConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if tm := c.authTimer.Load(); tm != nil {
			tm.Stop()
		}
		c.l.mu.Lock()
		delete(c.l.conns, c)
		if c.l.byRemote[c.remote] == c {
			delete(c.l.byRemote, c.remote)
		}
		c.l.mu.Unlock()
		c.l.srv.tcpConns.release(c.remote.Addr())
		err = c.Conn.Close()
	})
	return err
}
