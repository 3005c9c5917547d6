package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// The ng listener over TCP (gateway.ng.listen_tcp), as rtpengine's
// listen-tcp-ng frames it: messages back to back on the stream, each a
// cookie, a space and one bencoded dictionary, with no length prefix
// and nothing between them; each reply is written back the same way, in
// the order of the requests. A request runs exactly as one that came by
// UDP from the connection's address: the same allowed_sources (checked
// on accept and again for every request, so a reload applies to open
// connections), max_request, rate_per_source and reply cache.

const (
	// maxNGConns bounds the open TCP connections: a SIP proxy keeps one
	// or a few.
	maxNGConns = 64
	// ngWriteTimeout bounds the time a reply waits for a client that
	// does not read.
	ngWriteTimeout = 5 * time.Second
)

// listenNGTCP opens the TCP listener at addr; nil when addr is empty.
func listenNGTCP(addr string) (*net.TCPListener, error) {
	if addr == "" {
		return nil, nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: ng listen_tcp %q: %w", addr, err)
	}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("gateway: ng listen_tcp: %w", err)
	}
	return ln, nil
}

func (s *ngServer) tcpAddr() netip.AddrPort {
	if s.tcp == nil {
		return netip.AddrPort{}
	}
	return s.tcp.Addr().(*net.TCPAddr).AddrPort()
}

// serveTCP accepts connections until the listener is closed; each gets
// a goroutine of its own, which close waits for.
func (s *ngServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait rather than spin.
			s.log.Warn("ng accept failed", "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		if !s.allowedSource(src.Addr().Unmap()) {
			s.m.drops.WithLabelValues("refused_source").Inc()
			_ = c.Close()
			continue
		}
		s.connMu.Lock()
		if s.connClosed || len(s.conns) >= maxNGConns {
			s.connMu.Unlock()
			s.m.drops.WithLabelValues("too_many_connections").Inc()
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.connMu.Unlock()
		go s.serveConn(c, src)
	}
}

// serveConn runs the requests of one connection in order until the
// client closes it, the server closes, or the stream breaks: a message
// longer than max_request, or bytes that cannot start a message (both
// counted; the stream cannot be resynchronised, so it is closed).
func (s *ngServer) serveConn(c *net.TCPConn, src netip.AddrPort) {
	defer s.wg.Done()
	defer func() {
		s.connMu.Lock()
		delete(s.conns, c)
		s.connMu.Unlock()
		_ = c.Close()
	}()
	rd := make([]byte, 16<<10)
	var buf []byte
	for {
		n, rerr := c.Read(rd)
		buf = append(buf, rd[:n]...)
		for {
			maxReq := int(s.g.cfg.Load().NG.MaxRequest)
			l, err := ng.FrameLen(buf)
			switch {
			case err != nil:
				s.m.drops.WithLabelValues("bad_frame").Inc()
				return
			case l > maxReq || (l == 0 && len(buf) > maxReq):
				s.m.drops.WithLabelValues("too_large").Inc()
				return
			case l == 0:
			case !s.allowedSource(src.Addr().Unmap()):
				// allowed_sources changed on a reload.
				s.m.drops.WithLabelValues("refused_source").Inc()
				return
			default:
				// Replies are cached by address without the port: a
				// client that retransmits on a new connection (after a
				// reconnect) gets the reply, not a second run.
				out := s.handle(buf[:l], netip.AddrPortFrom(src.Addr(), 0), time.Now())
				buf = buf[:copy(buf, buf[l:])]
				if out == nil {
					continue
				}
				_ = c.SetWriteDeadline(time.Now().Add(ngWriteTimeout))
				_, err := c.Write(out)
				clear(out)
				if err != nil {
					return
				}
				continue
			}
			break
		}
		if rerr != nil {
			return
		}
	}
}

// closeTCP closes the listener and every connection; their goroutines
// end on net.ErrClosed.
func (s *ngServer) closeTCP() {
	if s.tcp == nil {
		return
	}
	_ = s.tcp.Close()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.connClosed = true
	for c := range s.conns {
		_ = c.Close()
	}
}

// NGTCPAddr returns the address of the ng listener over TCP; invalid
// when it is off or the gateway is not running.
func (g *Gateway) NGTCPAddr() netip.AddrPort {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ng == nil {
		return netip.AddrPort{}
	}
	return g.ng.tcpAddr()
}
