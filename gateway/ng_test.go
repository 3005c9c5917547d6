package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mediaedge/mediaedge/gateway/ng"
	metest "github.com/mediaedge/mediaedge/internal/testutil"
)

// ngConfig is testConfig with the ng listener on an ephemeral loopback
// port.
func ngConfig() Config {
	c := testConfig()
	c.NG.Listen = "127.0.0.1:0"
	return c
}

// freeAddr returns a loopback address with a port nobody holds now.
func freeAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// ngRaw sends one datagram to the ng listener and returns the reply
// (nil when none came within wait).
func ngRaw(t *testing.T, conn *net.UDPConn, msg []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	n, err := conn.Read(buf)
	if err != nil {
		return nil
	}
	return append([]byte(nil), buf[:n]...)
}

func ngDial(t *testing.T, g *Gateway) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(g.NGAddr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ngMessage(t *testing.T, cookie string, d map[string]any) []byte {
	t.Helper()
	b, err := ng.Reply(cookie, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replyDict(t *testing.T, b []byte) ng.Dict {
	t.Helper()
	_, body, ok := ng.SplitCookie(b)
	if !ok {
		t.Fatalf("reply %q has no cookie", b)
	}
	d, err := ng.DecodeRequest(body)
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	return d
}

func (s *ngServer) numCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func mustSessions(t *testing.T, g *Gateway) []SessionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := g.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ngRTP(seq uint16, ssrc uint32) []byte {
	p := []byte{0x80, 0, byte(seq >> 8), byte(seq), 0, 0, 0, 1, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
	return append(p, bytes.Repeat([]byte{0xd5}, 160)...)
}

const testOfferSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 30000 RTP/SAVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
	"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=sendrecv\r\n"

// TestNGRetransmittedOfferRunsOnce sends the same offer datagram three
// times: three identical replies, one call.
func TestNGRetransmittedOfferRunsOnce(t *testing.T) {
	g := startGateway(t, ngConfig())
	conn := ngDial(t, g)
	msg := ngMessage(t, "4242_1_0", map[string]any{"command": "offer", "call-id": "retx@test", "from-tag": "a1", "sdp": testOfferSDP})
	var first []byte
	for i := 0; i < 3; i++ {
		r := ngRaw(t, conn, msg, 2*time.Second)
		if r == nil {
			t.Fatalf("try %d: no reply", i)
		}
		if first == nil {
			first = r
			if d := replyDict(t, r); d.Str("result") != "ok" {
				t.Fatalf("offer: %v", d)
			}
			continue
		}
		if !bytes.Equal(r, first) {
			t.Errorf("try %d: reply differs from the first", i)
		}
	}
	if n := g.ng.numCalls(); n != 1 {
		t.Errorf("%d calls after three copies of one offer, want 1", n)
	}
	if v := counterValue(t, g.ngm.requests.WithLabelValues("retransmission", "retransmission")); v != 2 {
		t.Errorf("%v retransmissions counted, want 2", v)
	}
	// A new cookie for the same offer is a re-offer: same ports and keys.
	r := ngRaw(t, conn, ngMessage(t, "4242_2_0", map[string]any{"command": "offer", "call-id": "retx@test", "from-tag": "a1", "sdp": testOfferSDP}), 2*time.Second)
	if d := replyDict(t, r); d.Str("sdp") != replyDict(t, first).Str("sdp") {
		t.Errorf("re-offer SDP differs:\n%s\nfirst:\n%s", d.Str("sdp"), replyDict(t, first).Str("sdp"))
	}
}

// TestNGBadInput: each bad request gets an error reply (or, from a
// refused source, nothing), and nothing is allocated.
func TestNGBadInput(t *testing.T) {
	cfg := ngConfig()
	cfg.NG.MaxRequest = 60000 // let an oversized SDP reach the SDP parser
	g := startGateway(t, cfg)
	conn := ngDial(t, g)
	offer := func(sdp string) map[string]any {
		return map[string]any{"command": "offer", "call-id": "bad@test", "from-tag": "a", "sdp": sdp}
	}
	noMedia := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	disabled := noMedia + "m=audio 0 RTP/SAVP 0\r\n"
	dtls := noMedia + "m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=fingerprint:sha-256 00:11\r\n"
	plain := noMedia + "m=audio 4000 RTP/AVP 0\r\n"
	for _, tc := range []struct {
		name string
		raw  []byte
		want string // in error-reason
	}{
		{"malformed bencode", []byte("c1 d7:command4:ping"), "bencode"},
		{"not a dictionary", []byte("c2 l4:pinge"), "not a dictionary"},
		{"trailing bytes", []byte("c3 d7:command4:pingeXX"), "after the value"},
		{"deep nesting", []byte("c4 " + strings.Repeat("l", 40) + strings.Repeat("e", 40)), "deeper"},
		{"unknown command", ngMessage(t, "c5", map[string]any{"command": "frobnicate"}), "unknown command"},
		{"no command", ngMessage(t, "c6", map[string]any{"call-id": "x"}), "no command"},
		{"missing call-id", ngMessage(t, "c7", map[string]any{"command": "offer", "from-tag": "a", "sdp": testOfferSDP}), "call-id"},
		{"missing from-tag", ngMessage(t, "c8", map[string]any{"command": "offer", "call-id": "x", "sdp": testOfferSDP}), "from-tag"},
		{"garbage sdp", ngMessage(t, "c9", offer("hello world")), "SDP"},
		{"oversized sdp", ngMessage(t, "c10", offer(testOfferSDP+strings.Repeat("a=x:"+strings.Repeat("y", 60)+"\r\n", 600))), "SDP"},
		{"no media", ngMessage(t, "c11", offer(noMedia)), "no usable media"},
		{"only disabled media", ngMessage(t, "c12", offer(disabled)), "no usable media"},
		{"bad fingerprint", ngMessage(t, "c13", offer(dtls)), "fingerprint"},
		{"plain not allowed", ngMessage(t, "c14", offer(plain)), "plain RTP"},
		{"bad key", ngMessage(t, "c15", offer(strings.Replace(testOfferSDP, "inline:WVNf", "inline:!!!", 1))), "a=crypto"},
		{"answer for unknown call", ngMessage(t, "c16", map[string]any{"command": "answer", "call-id": "nope", "from-tag": "a", "to-tag": "b", "sdp": testOfferSDP}), "unknown call-id"},
		{"delete unknown call", ngMessage(t, "c17", map[string]any{"command": "delete", "call-id": "nope"}), "call-id"},
		{"refused flag", ngMessage(t, "c18", map[string]any{"command": "offer", "call-id": "x", "from-tag": "a", "sdp": testOfferSDP, "ICE": "force-relay"}), "ICE"},
		{"bad direction", ngMessage(t, "c19", map[string]any{"command": "offer", "call-id": "x", "from-tag": "a", "sdp": testOfferSDP, "direction": []any{"internal", "internal"}}), "direction"},
		{"only a suite the leg refuses", ngMessage(t, "c20", map[string]any{"command": "offer", "call-id": "x", "from-tag": "a", "sdp": testOfferSDP, "SDES": []any{"only-NULL_HMAC_SHA1_80"}}), "no crypto suite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ngRaw(t, conn, tc.raw, 2*time.Second)
			if r == nil {
				t.Fatal("no reply")
			}
			d := replyDict(t, r)
			if d.Str("result") != "error" || !strings.Contains(d.Str("error-reason"), tc.want) {
				t.Errorf("reply %v, want an error about %q", d, tc.want)
			}
		})
	}
	if n := g.ng.numCalls(); n != 0 {
		t.Errorf("%d calls after bad requests", n)
	}
	if n := len(mustSessions(t, g)); n != 0 {
		t.Errorf("%d sessions after bad requests", n)
	}
	// The listener still works.
	if d := replyDict(t, ngRaw(t, conn, ngMessage(t, "p", map[string]any{"command": "ping"}), 2*time.Second)); d.Str("result") != "pong" {
		t.Errorf("ping after bad input: %v", d)
	}
	for _, c := range []struct {
		cmd, result string
		want        float64
	}{{"unknown", "error", 6}, {"offer", "error", 12}, {"ping", "ok", 1}, {"answer", "error", 1}} {
		if v := counterValue(t, g.ngm.requests.WithLabelValues(c.cmd, c.result)); v != c.want {
			t.Errorf("mediaedge_gateway_ng_requests_total{command=%q,result=%q} = %v, want %v", c.cmd, c.result, v, c.want)
		}
	}
	// No cookie, too large: dropped, counted.
	for _, raw := range [][]byte{[]byte("nocookie"), append([]byte("big "), make([]byte, 61000)...)} {
		if r := ngRaw(t, conn, raw, 300*time.Millisecond); r != nil {
			t.Errorf("reply %q to a datagram that should be dropped", r)
		}
	}
	if a, b := counterValue(t, g.ngm.drops.WithLabelValues("no_cookie")), counterValue(t, g.ngm.drops.WithLabelValues("too_large")); a != 1 || b != 1 {
		t.Errorf("drops no_cookie %v too_large %v, want 1 each", a, b)
	}
}

// TestNGRefusedSource: a source outside allowed_sources gets nothing and
// is counted; nothing is allocated.
func TestNGRefusedSource(t *testing.T) {
	cfg := ngConfig()
	cfg.NG.AllowedSources = []string{"192.0.2.0/24"}
	g := startGateway(t, cfg)
	conn := ngDial(t, g)
	if r := ngRaw(t, conn, ngMessage(t, "x1", map[string]any{"command": "offer", "call-id": "c", "from-tag": "a", "sdp": testOfferSDP}), 300*time.Millisecond); r != nil {
		t.Fatalf("refused source got a reply: %q", r)
	}
	if n := g.ng.numCalls(); n != 0 {
		t.Errorf("%d calls from a refused source", n)
	}
	if v := counterValue(t, g.ngm.drops.WithLabelValues("refused_source")); v != 1 {
		t.Errorf("refused_source drops %v, want 1", v)
	}
}

// TestNGRateLimit: a source past rate_per_source is dropped and counted.
func TestNGRateLimit(t *testing.T) {
	cfg := ngConfig()
	cfg.NG.RatePerSource = 5
	g := startGateway(t, cfg)
	conn := ngDial(t, g)
	// 20 pings back to back, then the answers: the bucket refills only
	// while the 20 are being sent, however slow a busy machine makes
	// the rest.
	start := time.Now()
	for i := 0; i < 20; i++ {
		if _, err := conn.Write(ngMessage(t, "r"+string(rune('a'+i)), map[string]any{"command": "ping"})); err != nil {
			t.Fatal(err)
		}
	}
	burst := time.Since(start)
	answered := 0
	buf := make([]byte, 65536)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := conn.Read(buf); err != nil {
			break
		}
		answered++
	}
	// 5 in the burst, plus what 5/s refilled while the 20 went out.
	most := 5 + int(5*burst.Seconds()) + 1
	if answered < 5 || answered > most {
		t.Errorf("%d of 20 pings sent in %v answered at 5/s, want 5 to %d", answered, burst, most)
	}
	metest.WaitFor(t, "every ping answered or counted", 10*time.Second, func() bool {
		return answered+int(counterValue(t, g.ngm.drops.WithLabelValues("rate_limited"))) >= 20
	})
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// TestNGDocsKamailioExample: the Kamailio configuration in docs/ng.md is
// the one the acceptance test runs, byte for byte.
func TestNGDocsKamailioExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/ng.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile("testdata/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```kamailio\n")
	if !ok {
		t.Fatal("docs/ng.md has no ```kamailio block")
	}
	block, _, _ = strings.Cut(block, "```")
	if block != string(cfg) {
		t.Error("the Kamailio example in docs/ng.md differs from gateway/testdata/kamailio.cfg")
	}
}

// TestNGReloadAllowedSources: a reload that drops the test's source from
// allowed_sources takes effect on the next request.
func TestNGReloadAllowedSources(t *testing.T) {
	cfg := ngConfig()
	g := startGateway(t, cfg)
	conn := ngDial(t, g)
	ping := ngMessage(t, "p1", map[string]any{"command": "ping"})
	if r := ngRaw(t, conn, ping, 2*time.Second); r == nil {
		t.Fatal("no pong before the reload")
	}
	cfg.NG.AllowedSources = []string{"192.0.2.0/24"}
	cfg.NG.Listen = "127.0.0.1:1" // needs a restart: kept
	if err := g.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if r := ngRaw(t, conn, ngMessage(t, "p2", map[string]any{"command": "ping"}), 300*time.Millisecond); r != nil {
		t.Errorf("a source no longer allowed got %q", r)
	}
	if g.cfg.Load().NG.Listen != "127.0.0.1:0" {
		t.Errorf("listen changed on reload to %s", g.cfg.Load().NG.Listen)
	}
}

// TestNGMaxSessionsCountsOffers: offered calls not yet answered count
// against max_sessions, and stop counting once answered or freed.
func TestNGMaxSessionsCountsOffers(t *testing.T) {
	cfg := ngConfig()
	cfg.MaxSessions = 2
	g := startGateway(t, cfg)
	conn := ngDial(t, g)
	offer := func(cookie, id string) ng.Dict {
		return replyDict(t, ngRaw(t, conn, ngMessage(t, cookie, map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": testOfferSDP}), 2*time.Second))
	}
	for i, id := range []string{"m1", "m2"} {
		if d := offer(fmt.Sprint("o", i), id); d.Str("result") != "ok" {
			t.Fatalf("offer %s: %v", id, d)
		}
	}
	if d := offer("o3", "m3"); d.Str("result") != "error" || !strings.Contains(d.Str("error-reason"), "max_sessions") {
		t.Errorf("a third offer with max_sessions 2: %v", d)
	}
	replyDict(t, ngRaw(t, conn, ngMessage(t, "d1", map[string]any{"command": "delete", "call-id": "m1"}), 2*time.Second))
	if d := offer("o4", "m4"); d.Str("result") != "ok" {
		t.Errorf("an offer after a delete: %v", d)
	}
	g.ng.mu.Lock()
	pending := g.ng.pending
	g.ng.mu.Unlock()
	if pending != 2 {
		t.Errorf("pending streams %d, want 2", pending)
	}
}
