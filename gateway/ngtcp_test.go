package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
	metest "github.com/mediaedge/mediaedge/internal/testutil"
)

// ngTCPConfig is ngConfig with the ng listener over TCP too.
func ngTCPConfig() Config {
	c := ngConfig()
	c.NG.ListenTCP = "127.0.0.1:0"
	return c
}

func dialNGTCP(t *testing.T, g *Gateway) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(g.NGTCPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readReplies reads n replies from the stream, framed as the requests.
func readReplies(t *testing.T, c *net.TCPConn, n int) []ng.Dict {
	t.Helper()
	var buf []byte
	var out []ng.Dict
	rd := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(out) < n {
		l, err := ng.FrameLen(buf)
		if err != nil {
			t.Fatalf("reply stream: %v", err)
		}
		if l == 0 {
			m, err := c.Read(rd)
			if err != nil {
				t.Fatalf("reading reply %d of %d: %v", len(out)+1, n, err)
			}
			buf = append(buf, rd[:m]...)
			continue
		}
		out = append(out, replyDict(t, buf[:l]))
		buf = buf[l:]
	}
	return out
}

// TestNGTCP: requests over TCP back to back in one write, and one request
// split into pieces of a few bytes, get their replies in order, framed as
// rtpengine frames them; a call set up over TCP works as one over UDP,
// and a repeated cookie, on the same connection or a new one, is
// answered from the reply cache without running twice.
func TestNGTCP(t *testing.T) {
	g := startGateway(t, ngTCPConfig())
	c := dialNGTCP(t, g)
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	offer := ngMessage(t, "t_1", map[string]any{"command": "offer", "call-id": "tcp@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP")})
	var two []byte
	two = append(two, ngMessage(t, "t_0", map[string]any{"command": "ping"})...)
	two = append(two, offer...)
	if _, err := c.Write(two); err != nil {
		t.Fatal(err)
	}
	r := readReplies(t, c, 2)
	if r[0].Str("result") != "pong" || r[1].Str("result") != "ok" {
		t.Fatalf("replies: %v, %v", r[0], r[1])
	}
	first := r[1].Str("sdp")
	toB := mediaOf(t, r[1])
	var gwB ngKey
	for _, line := range toB.Crypto {
		if k, err := parseNGKey(line); err == nil && k.Suite.Name == "AES_CM_128_HMAC_SHA1_80" {
			gwB = k
		}
	}
	b.key.Tag = gwB.Tag

	// The same offer again (same cookie), in pieces of 7 bytes.
	for p := offer; len(p) > 0; p = p[min(7, len(p)):] {
		if _, err := c.Write(p[:min(7, len(p))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if again := readReplies(t, c, 1)[0]; again.Str("sdp") != first {
		t.Fatal("the repeated offer got another reply")
	}
	// Again on a new connection, as after a reconnect.
	c2 := dialNGTCP(t, g)
	if _, err := c2.Write(offer); err != nil {
		t.Fatal(err)
	}
	if again := readReplies(t, c2, 1)[0]; again.Str("sdp") != first {
		t.Fatal("the offer repeated on a new connection got another reply")
	}
	if n := g.ng.numCalls(); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
	answer := ngMessage(t, "t_2", map[string]any{"command": "answer", "call-id": "tcp@test", "from-tag": "a", "to-tag": "b", "sdp": b.sdp("RTP/SAVP")})
	if _, err := c.Write(answer); err != nil {
		t.Fatal(err)
	}
	toA := mediaOf(t, readReplies(t, c, 1)[0])
	through(t, a, b, a.key, gwB, addrOf(toA), 1, 3)
	through(t, b, a, b.key, keyOf(t, toA), addrOf(toB), 1, 3)
	del := ngMessage(t, "t_3", map[string]any{"command": "delete", "call-id": "tcp@test", "from-tag": "a"})
	if _, err := c.Write(del); err != nil {
		t.Fatal(err)
	}
	if r := readReplies(t, c, 1)[0]; r.Str("result") != "ok" {
		t.Fatalf("delete: %v", r)
	}
	if n := g.ng.numCalls(); n != 0 {
		t.Fatalf("%d calls after delete", n)
	}
}

// TestNGTCPBadStreams: a connection from a source not allowed, a stream
// that cannot be framed, a message longer than max_request, and one cut
// off past max_request are each closed without a reply and counted; a
// well-formed message with a bad body gets an error reply and the
// connection stays; a connection left open does not keep Close waiting.
func TestNGTCPBadStreams(t *testing.T) {
	t.Run("refused source", func(t *testing.T) {
		cfg := ngTCPConfig()
		cfg.NG.AllowedSources = []string{"192.0.2.0/24"}
		g := startGateway(t, cfg)
		c := dialNGTCP(t, g)
		_, _ = c.Write(ngMessage(t, "x", map[string]any{"command": "ping"}))
		expectClosed(t, c)
		if v := counterValue(t, g.ngm.drops.WithLabelValues("refused_source")); v != 1 {
			t.Errorf("refused_source drops %v, want 1", v)
		}
	})
	for _, tc := range []struct {
		name, reason string
		msg          func(t *testing.T) []byte
	}{
		{"not bencode", "bad_frame", func(*testing.T) []byte { return []byte(`x {"command":"ping"}`) }},
		{"no cookie", "bad_frame", func(*testing.T) []byte { return []byte(strings.Repeat("x", 100)) }},
		{"too large", "too_large", func(t *testing.T) []byte {
			return ngMessage(t, "x", map[string]any{"command": "offer", "sdp": strings.Repeat("v", 20<<10)})
		}},
		{"cut off past max_request", "too_large", func(t *testing.T) []byte {
			return ngMessage(t, "x", map[string]any{"command": "offer", "sdp": strings.Repeat("v", 20<<10)})[:17<<10]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, ngTCPConfig())
			c := dialNGTCP(t, g)
			if _, err := c.Write(tc.msg(t)); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			metest.WaitFor(t, "the drop to be counted", 5*time.Second, func() bool {
				return counterValue(t, g.ngm.drops.WithLabelValues(tc.reason)) == 1
			})
		})
	}
	t.Run("bad body", func(t *testing.T) {
		g := startGateway(t, ngTCPConfig())
		c := dialNGTCP(t, g)
		msg := append([]byte("e1 l4:pinge"), ngMessage(t, "e2", map[string]any{"command": "offer", "call-id": "x", "from-tag": "a", "sdp": "garbage"})...)
		msg = append(msg, ngMessage(t, "e3", map[string]any{"command": "ping"})...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		r := readReplies(t, c, 3)
		if r[0].Str("result") != "error" || r[1].Str("result") != "error" || r[2].Str("result") != "pong" {
			t.Fatalf("replies %v", r)
		}
	})
	t.Run("too many connections", func(t *testing.T) {
		g := startGateway(t, ngTCPConfig())
		for i := 0; i < maxNGConns; i++ {
			c := dialNGTCP(t, g)
			if _, err := c.Write(ngMessage(t, "p", map[string]any{"command": "ping"})); err != nil {
				t.Fatal(err)
			}
			readReplies(t, c, 1)
		}
		c := dialNGTCP(t, g)
		_, _ = c.Write(ngMessage(t, "p", map[string]any{"command": "ping"}))
		expectClosed(t, c)
		if v := counterValue(t, g.ngm.drops.WithLabelValues("too_many_connections")); v != 1 {
			t.Errorf("too_many_connections drops %v, want 1", v)
		}
	})
	t.Run("open at close", func(t *testing.T) {
		g := startGateway(t, ngTCPConfig())
		c := dialNGTCP(t, g)
		if _, err := c.Write([]byte("c1 d7:comm")); err != nil {
			t.Fatal(err)
		}
		metest.WaitFor(t, "the connection to be served", 5*time.Second, func() bool {
			g.ng.connMu.Lock()
			defer g.ng.connMu.Unlock()
			return len(g.ng.conns) == 1
		})
		done := make(chan struct{})
		go func() { g.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close waits for an open ng TCP connection")
		}
		expectClosed(t, c)
	})
}

// expectClosed checks that the server closes c without replying.
func expectClosed(t *testing.T, c *net.TCPConn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the connection is still open")
			}
			break
		}
	}
	if len(got) > 0 {
		t.Fatalf("got a reply: %q", bytes.TrimSpace(got[:min(len(got), 80)]))
	}
}

// TestNGTCPOnly: with listen empty and listen_tcp set, the ng listener
// serves TCP alone.
func TestNGTCPOnly(t *testing.T) {
	cfg := ngTCPConfig()
	cfg.NG.Listen = ""
	g := startGateway(t, cfg)
	if g.NGAddr().IsValid() {
		t.Errorf("a UDP listener at %s with listen empty", g.NGAddr())
	}
	c := dialNGTCP(t, g)
	if _, err := c.Write(ngMessage(t, "p", map[string]any{"command": "ping"})); err != nil {
		t.Fatal(err)
	}
	if r := readReplies(t, c, 1)[0]; r.Str("result") != "pong" {
		t.Fatalf("ping: %v", r)
	}
}

// TestNGTCPReload: a reload that drops the connection's source from
// allowed_sources closes the open connection at its next request,
// unanswered and counted; listen_tcp needs a restart and is kept.
func TestNGTCPReload(t *testing.T) {
	cfg := ngTCPConfig()
	g := startGateway(t, cfg)
	c := dialNGTCP(t, g)
	if _, err := c.Write(ngMessage(t, "p1", map[string]any{"command": "ping"})); err != nil {
		t.Fatal(err)
	}
	if r := readReplies(t, c, 1)[0]; r.Str("result") != "pong" {
		t.Fatalf("ping: %v", r)
	}
	cfg.NG.AllowedSources = []string{"192.0.2.0/24"}
	cfg.NG.ListenTCP = "127.0.0.1:1"
	if err := g.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if g.cfg.Load().NG.ListenTCP != "127.0.0.1:0" {
		t.Errorf("listen_tcp changed on reload to %s", g.cfg.Load().NG.ListenTCP)
	}
	if _, err := c.Write(ngMessage(t, "p2", map[string]any{"command": "ping"})); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	if v := counterValue(t, g.ngm.drops.WithLabelValues("refused_source")); v != 1 {
		t.Errorf("refused_source drops %v, want 1", v)
	}
}

// TestNGTCPAndUDPTogether: requests over TCP and UDP at once, with a
// reply cache so small that every reply is evicted (and wiped) soon
// after it is made: each client still reads every reply whole.
func TestNGTCPAndUDPTogether(t *testing.T) {
	cfg := ngTCPConfig()
	cfg.NG.ReplyCacheSize = 16
	g := startGateway(t, cfg)
	const n = 300
	errs := make(chan error, 2)
	go func() {
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(g.NGTCPAddr()))
		if err != nil {
			errs <- err
			return
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			msg, _ := ng.Reply("t"+strconv.Itoa(i), map[string]any{"command": "ping"})
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
		}
		var buf []byte
		rd := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < n; {
			l, err := ng.FrameLen(buf)
			if err != nil {
				errs <- fmt.Errorf("tcp reply %d: %w", i, err)
				return
			}
			if l == 0 {
				m, err := c.Read(rd)
				if err != nil {
					errs <- fmt.Errorf("tcp reply %d: %w", i, err)
					return
				}
				buf = append(buf, rd[:m]...)
				continue
			}
			if want := fmt.Sprintf("t%d d6:result4:ponge", i); string(buf[:l]) != want {
				errs <- fmt.Errorf("tcp reply %q, want %q", buf[:l], want)
				return
			}
			buf, i = buf[l:], i+1
		}
		errs <- nil
	}()
	go func() {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(g.NGAddr()))
		if err != nil {
			errs <- err
			return
		}
		defer c.Close()
		rd := make([]byte, 4096)
		for i := 0; i < n; i++ {
			msg, _ := ng.Reply("u"+strconv.Itoa(i), map[string]any{"command": "ping"})
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			m, err := c.Read(rd)
			if err != nil {
				errs <- fmt.Errorf("udp reply %d: %w", i, err)
				return
			}
			if want := fmt.Sprintf("u%d d6:result4:ponge", i); string(rd[:m]) != want {
				errs <- fmt.Errorf("udp reply %q, want %q", rd[:m], want)
				return
			}
		}
		errs <- nil
	}()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
