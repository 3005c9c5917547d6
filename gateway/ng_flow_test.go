package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/mediaedge/mediaedge/gateway/ng"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// ngEnd is one SIP endpoint of a test call: a socket and its key.
type ngEnd struct {
	conn *net.UDPConn
	key  ngKey
}

func newNGEnd(t *testing.T, suite string) *ngEnd {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &ngEnd{conn: c, key: newBenchKey(t, suite, 1)}
}

func newBenchKey(t testing.TB, suite string, tag int) ngKey { return newNGKey(t, suite, tag) }

func (e *ngEnd) addr() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// sdp is an SDP body for the endpoint: one audio line (and a video line
// on the next port when video), with its key, and extra attributes.
func (e *ngEnd) sdp(proto string, extra ...string) string {
	a := e.addr()
	lines := []string{"v=0", "o=- 7 7 IN IP4 " + a.Addr().String(), "s=-", "c=IN IP4 " + a.Addr().String(), "t=0 0",
		fmt.Sprintf("m=audio %d %s 0", a.Port(), proto), "a=rtpmap:0 PCMU/8000"}
	if strings.Contains(proto, "SAVP") {
		lines = append(lines, e.key.CryptoLine())
	}
	lines = append(lines, extra...)
	return strings.Join(lines, "\r\n") + "\r\n"
}

func ngDo(t *testing.T, c *ngClient, msg map[string]any) ng.Dict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.Call(ctx, msg)
	if err != nil {
		t.Fatalf("%v: %v", msg["command"], err)
	}
	return ng.Dict(d)
}

// mediaOf parses the single audio line of a reply's SDP.
func mediaOf(t *testing.T, d ng.Dict) ng.Media {
	t.Helper()
	s, err := ng.ParseSDP([]byte(d.Str("sdp")))
	if err != nil {
		t.Fatalf("reply SDP: %v\n%s", err, d.Str("sdp"))
	}
	return s.Media[0]
}

func keyOf(t *testing.T, m ng.Media) ngKey {
	t.Helper()
	if len(m.Crypto) != 1 {
		t.Fatalf("%d a=crypto lines: %v", len(m.Crypto), len(m.Crypto))
	}
	k, err := parseNGKey(m.Crypto[0])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// through sends n SRTP packets from src (with tx) to target and checks
// that dst gets all of them, opening with rx.
func through(t *testing.T, src, dst *ngEnd, tx, rx ngKey, target netip.AddrPort, seq uint16, n int) {
	t.Helper()
	enc, err := tx.Context()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := rx.Context()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := 0; i < n; i++ {
		pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq + uint16(i), SSRC: 0xabc, Timestamp: uint32(i) * 160},
			Payload: []byte(fmt.Sprintf("frame-%d", i))}).Marshal()
		ct, err := enc.EncryptRTP(nil, pkt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.conn.WriteToUDPAddrPort(ct, target); err != nil {
			t.Fatal(err)
		}
		_ = dst.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, _, err := dst.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d: nothing arrived: %v", i, err)
		}
		plain, err := dec.DecryptRTP(nil, buf[:m], nil)
		if err != nil {
			t.Fatalf("packet %d does not open with the expected key: %v", i, err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(plain); err != nil || string(p.Payload) != fmt.Sprintf("frame-%d", i) {
			t.Fatalf("packet %d: payload %q", i, p.Payload)
		}
	}
}

func addrOf(m ng.Media) netip.AddrPort { return netip.AddrPortFrom(m.Addr, uint16(m.Port)) }

// TestNGReinviteRekeys: a re-INVITE from either side with a new key keeps
// the gateway's ports and keys toward both sides and re-keys the leg of
// the side that changed its key; media flows on with the new key.
func TestNGReinviteRekeys(t *testing.T) {
	cfg := ngConfig()
	cfg.Internal.RekeyGrace, cfg.Cloud.RekeyGrace = 0, 0
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_32")
	base := map[string]any{"call-id": "reinvite@test", "replace": []any{"origin", "session-connection"}}
	msg := func(cmd, from, to, sdp string) map[string]any {
		m := map[string]any{"command": cmd, "from-tag": from, "sdp": sdp}
		if to != "" {
			m["to-tag"] = to
		}
		for k, v := range base {
			m[k] = v
		}
		return m
	}
	toB := mediaOf(t, ngDo(t, c, msg("offer", "ta", "", a.sdp("RTP/SAVP"))))
	// The callee takes the gateway's AES_CM_128_HMAC_SHA1_32 line.
	var gwB ngKey
	for _, line := range toB.Crypto {
		if k, err := parseNGKey(line); err == nil && k.Suite.Name == "AES_CM_128_HMAC_SHA1_32" {
			gwB = k
		}
	}
	if gwB.Master == nil {
		t.Fatalf("no AES_CM_128_HMAC_SHA1_32 line offered to the callee: %v", toB.Crypto)
	}
	b.key.Tag = gwB.Tag
	toA := mediaOf(t, ngDo(t, c, msg("answer", "ta", "tb", b.sdp("RTP/SAVP"))))
	gwA := keyOf(t, toA)
	through(t, a, b, a.key, gwB, addrOf(toA), 100, 5)
	through(t, b, a, b.key, gwA, addrOf(toB), 100, 5)

	// The caller re-INVITEs with a new key.
	oldA := a.key
	a.key = newBenchKey(t, "AES_CM_128_HMAC_SHA1_80", 1)
	toB2 := mediaOf(t, ngDo(t, c, msg("offer", "ta", "tb", a.sdp("RTP/SAVP"))))
	toA2 := mediaOf(t, ngDo(t, c, msg("answer", "ta", "tb", b.sdp("RTP/SAVP"))))
	if addrOf(toB2) != addrOf(toB) || addrOf(toA2) != addrOf(toA) {
		t.Errorf("ports moved on re-INVITE: %s %s, were %s %s", addrOf(toB2), addrOf(toA2), addrOf(toB), addrOf(toA))
	}
	if k := keyOf(t, toB2); string(k.Master) != string(gwB.Master) {
		t.Errorf("the gateway's key toward the callee changed on the caller's re-INVITE")
	}
	if k := keyOf(t, toA2); string(k.Master) != string(gwA.Master) {
		t.Errorf("the gateway's key toward the caller changed")
	}
	through(t, a, b, a.key, gwB, addrOf(toA), 105, 5)
	// The old key no longer authenticates (rekey_grace 0).
	enc, _ := oldA.Context()
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 110, SSRC: 0xabc}, Payload: []byte("old")}).Marshal()
	ct, _ := enc.EncryptRTP(nil, pkt, nil)
	_, _ = a.conn.WriteToUDPAddrPort(ct, addrOf(toA))
	_ = b.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := b.conn.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
		t.Error("a packet with the caller's replaced key went through")
	}

	// The callee re-INVITEs with a new key: from-tag is now the callee's.
	b.key = newBenchKey(t, "AES_CM_128_HMAC_SHA1_32", 1)
	toA3 := mediaOf(t, ngDo(t, c, msg("offer", "tb", "ta", b.sdp("RTP/SAVP"))))
	toB3 := mediaOf(t, ngDo(t, c, msg("answer", "tb", "ta", a.sdp("RTP/SAVP"))))
	if addrOf(toA3) != addrOf(toA) || addrOf(toB3) != addrOf(toB) {
		t.Errorf("ports moved on the callee's re-INVITE")
	}
	through(t, b, a, b.key, gwA, addrOf(toB), 105, 5)
	through(t, a, b, a.key, gwB, addrOf(toA), 111, 5)
	ss := mustSessions(t, g)
	if len(ss) != 1 {
		t.Fatalf("%d sessions after re-INVITEs, want 1", len(ss))
	}
	if n := ss[0].NG; n == nil || n.CallID != "reinvite@test" || n.FromTag != "ta" || n.ToTag != "tb" || n.Media != 1 || n.OffererLeg != "internal" {
		t.Errorf("the session's ng call: %+v", n)
	}
	q := ngDo(t, c, map[string]any{"command": "query", "call-id": "reinvite@test"})
	if _, ok := q["tags"].(map[string]any)["ta"]; !ok {
		t.Errorf("query has no tag ta: %v", q)
	}
	ngDo(t, c, map[string]any{"command": "delete", "call-id": "reinvite@test", "from-tag": "ta"})
	testutil.WaitFor(t, "the deleted call's sessions to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
}

// TestNGOfferShapes checks the SDP the answerer is offered for the flags
// Kamailio deployments send.
func TestNGOfferShapes(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	n := 0
	offer := func(sdp string, flags map[string]any) ng.Dict {
		n++
		m := map[string]any{"command": "offer", "call-id": fmt.Sprintf("shape-%d@test", n), "from-tag": "a", "sdp": sdp}
		for k, v := range flags {
			m[k] = v
		}
		return ngDo(t, c, m)
	}
	suites := func(m ng.Media) []string {
		var out []string
		for _, l := range m.Crypto {
			f := strings.Fields(l)
			out = append(out, f[1])
		}
		return out
	}
	t.Run("default: every allowed suite, the caller's first, fresh keys", func(t *testing.T) {
		m := mediaOf(t, offer(a.sdp("RTP/SAVP"), nil))
		got := suites(m)
		if len(got) != 6 || got[0] != "AES_CM_128_HMAC_SHA1_80" {
			t.Errorf("suites %v", got)
		}
		for _, l := range m.Crypto {
			if strings.Contains(l, a.key.Inline()) {
				t.Error("the caller's key is offered to the callee")
			}
			if strings.Contains(l, "=") {
				t.Errorf("padded key without SDES-pad: %s", l)
			}
		}
		// (Test ports are ephemeral: RTCP is not on the next port.)
		if m.Proto != "RTP/SAVP" || m.Mux || m.RTCPPort == m.Port || m.RTCPPort == 0 {
			t.Errorf("media %+v", m)
		}
	})
	t.Run("SDES no- and only-", func(t *testing.T) {
		m := mediaOf(t, offer(a.sdp("RTP/SAVP"), map[string]any{"SDES": []any{"no-AEAD_AES_256_GCM", "no-AEAD_AES_128_GCM"}}))
		if got := suites(m); len(got) != 4 || strings.Contains(strings.Join(got, " "), "AEAD") {
			t.Errorf("suites %v", got)
		}
		m = mediaOf(t, offer(a.sdp("RTP/SAVP"), map[string]any{"flags": []any{"SDES-only-AES_256_CM_HMAC_SHA1_80"}}))
		if got := suites(m); len(got) != 1 || got[0] != "AES_256_CM_HMAC_SHA1_80" {
			t.Errorf("suites %v", got)
		}
	})
	t.Run("SDES pad and lifetime", func(t *testing.T) {
		m := mediaOf(t, offer(a.sdp("RTP/SAVP"), map[string]any{"SDES": []any{"pad", "lifetime", "only-AES_256_CM_HMAC_SHA1_80"}}))
		if len(m.Crypto) != 1 || !strings.Contains(m.Crypto[0], "==|2^31") {
			t.Errorf("crypto %v", m.Crypto)
		}
	})
	t.Run("transport-protocol RTP/SAVPF and rtcp-mux offer", func(t *testing.T) {
		m := mediaOf(t, offer(a.sdp("RTP/SAVP"), map[string]any{"transport-protocol": "RTP/SAVPF", "rtcp-mux": []any{"offer"}}))
		if m.Proto != "RTP/SAVPF" || !m.Mux || m.RTCPPort == m.Port || m.RTCPPort == 0 {
			t.Errorf("media %+v", m)
		}
	})
	t.Run("rtcp-mux require", func(t *testing.T) {
		m := mediaOf(t, offer(a.sdp("RTP/SAVP"), map[string]any{"rtcp-mux": []any{"require"}}))
		if !m.Mux {
			t.Errorf("media %+v", m)
		}
		s := offer(a.sdp("RTP/SAVP"), map[string]any{"rtcp-mux": []any{"require"}}).Str("sdp")
		if strings.Contains(s, "a=rtcp:") {
			t.Errorf("require advertises a separate RTCP port:\n%s", s)
		}
	})
	t.Run("rtcp-mux demux", func(t *testing.T) {
		m := mediaOf(t, offer(a.sdp("RTP/SAVP", "a=rtcp-mux"), map[string]any{"rtcp-mux": []any{"demux"}}))
		if m.Mux {
			t.Errorf("demux still offers rtcp-mux")
		}
		m = mediaOf(t, offer(a.sdp("RTP/SAVP", "a=rtcp-mux"), nil))
		if !m.Mux {
			t.Errorf("the caller's rtcp-mux is not offered on")
		}
	})
	t.Run("ICE removed", func(t *testing.T) {
		s := offer(a.sdp("RTP/SAVP", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789012345678901", "a=candidate:1 1 UDP 2130706431 127.0.0.1 5000 typ host"),
			map[string]any{"ICE": "remove"}).Str("sdp")
		if strings.Contains(s, "ice-") || strings.Contains(s, "candidate") {
			t.Errorf("ICE attributes left:\n%s", s)
		}
	})
	t.Run("audio and video", func(t *testing.T) {
		addr := a.addr()
		sdp := a.sdp("RTP/SAVP") + fmt.Sprintf("m=video %d RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\n%s\r\n", addr.Port()+2, a.key.CryptoLine())
		d := offer(sdp, nil)
		s, err := ng.ParseSDP([]byte(d.Str("sdp")))
		if err != nil || len(s.Media) != 2 {
			t.Fatalf("%v %v", err, s)
		}
		if s.Media[0].Port == s.Media[1].Port || s.Media[1].Type != "video" || len(s.Media[1].Crypto) == 0 ||
			!strings.Contains(d.Str("sdp"), "a=rtpmap:96 VP8/90000") {
			t.Errorf("media %+v", s.Media)
		}
	})
	t.Run("direction puts the caller on the cloud leg", func(t *testing.T) {
		d := offer(a.sdp("RTP/SAVP"), map[string]any{"direction": []any{"external", "internal"}})
		b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
		ngDo(t, c, map[string]any{"command": "answer", "call-id": fmt.Sprintf("shape-%d@test", n), "from-tag": "a", "to-tag": "b",
			"sdp": b.sdp("RTP/SAVP"), "direction": []any{"external", "internal"}})
		ss := mustSessions(t, g)
		if len(ss) != 1 || ss[0].Cloud.Remote != a.addr().String() || ss[0].Internal.Remote != b.addr().String() {
			t.Errorf("direction external,internal: sessions %+v", ss)
		}
		if m := mediaOf(t, d); m.Addr.String() != g.cfg.Load().Internal.Bind {
			t.Errorf("the callee is offered %s, not the internal leg's address", m.Addr)
		}
	})
	t.Run("plain caller to SRTP callee", func(t *testing.T) {
		cfg := *g.cfg.Load()
		cfg.Internal.AllowPlain = true
		g.cfg.Store(&cfg)
		m := mediaOf(t, offer(a.sdp("RTP/AVP"), map[string]any{"transport-protocol": "RTP/SAVP"}))
		if m.Proto != "RTP/SAVP" || len(m.Crypto) == 0 {
			t.Errorf("media %+v", m)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Call(ctx, map[string]any{"command": "offer", "call-id": "sdes-off@test", "from-tag": "a",
			"sdp": a.sdp("RTP/SAVP"), "SDES": "off", "flags": []any{"trust-address"}})
		if err == nil || !strings.Contains(err.Error(), "plain RTP toward the answerer") {
			t.Errorf("SDES off toward a leg without allow_plain: %v", err)
		}
	})
}

// answeredCall sets up a call between a and b and returns the SDP each
// was sent (toB: the offer, toA: the answer) and mediaedge's keys.
func answeredCall(t *testing.T, c *ngClient, id string, a, b *ngEnd, extra map[string]any) (toA, toB ng.Media, gwA, gwB ngKey) {
	t.Helper()
	offer := map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": a.sdp("RTP/SAVP")}
	for k, v := range extra {
		offer[k] = v
	}
	toB = mediaOf(t, ngDo(t, c, offer))
	for _, line := range toB.Crypto {
		if k, err := parseNGKey(line); err == nil && k.Suite.Name == b.key.Suite.Name {
			gwB = k
			break
		}
	}
	b.key.Tag = gwB.Tag
	answer := map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b", "sdp": b.sdp("RTP/SAVP")}
	for k, v := range extra {
		answer[k] = v
	}
	toA = mediaOf(t, ngDo(t, c, answer))
	return toA, toB, keyOf(t, toA), gwB
}

// TestNGDeleteDelayAndOfferTimeout: a delete with delete-delay answers at
// once and frees the call after the delay; an offer never answered is
// freed after offer_timeout, ports included.
func TestNGDeleteDelayAndOfferTimeout(t *testing.T) {
	cfg := ngConfig()
	cfg.NG.OfferTimeout = config.Duration(time.Second)
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	answeredCall(t, c, "delay@test", a, b, nil)
	d := ngDo(t, c, map[string]any{"command": "delete", "call-id": "delay@test", "from-tag": "a", "delete-delay": int64(2)})
	if _, ok := d["totals"]; !ok {
		t.Errorf("delete reply without statistics: %v", d)
	}
	if g.ng.numCalls() != 1 || len(mustSessions(t, g)) != 1 {
		t.Fatal("the call went before its delete-delay")
	}
	if l := ngDo(t, c, map[string]any{"command": "list"}); len(l.Strs("calls")) != 1 {
		t.Errorf("list: %v", l)
	}
	testutil.WaitFor(t, "the call and its sessions to go after the delete-delay", 6*time.Second, func() bool { return g.ng.numCalls() == 0 && len(mustSessions(t, g)) == 0 })

	toB := mediaOf(t, ngDo(t, c, map[string]any{"command": "offer", "call-id": "unanswered@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP")}))
	testutil.WaitFor(t, "the unanswered offer to time out", 6*time.Second, func() bool { return g.ng.numCalls() == 0 })
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(toB.Addr, uint16(toB.Port))))
	if err != nil {
		t.Fatalf("the unanswered offer's port is still held: %v", err)
	}
	conn.Close()
	st := ngDo(t, c, map[string]any{"command": "statistics"})
	cur, _ := st["statistics"].(map[string]any)["totalstatistics"].(map[string]any)
	if cur["managedsessions"] != int64(2) || cur["offers"] != int64(2) || cur["answers"] != int64(1) || cur["deletes"] != int64(1) {
		t.Errorf("statistics %v", st)
	}
}

// TestNGSharedPorts: with gateway.ng.port_mode shared, calls use the
// workers' shared ports and media flows both ways with fresh keys.
func TestNGSharedPorts(t *testing.T) {
	cfg := ngConfig()
	cfg.NG.PortMode = PortsShared
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_256_CM_HMAC_SHA1_80")
	toA, toB, gwA, gwB := answeredCall(t, c, "shared@test", a, b, nil)
	through(t, a, b, a.key, gwB, addrOf(toA), 1, 5)
	through(t, b, a, b.key, gwA, addrOf(toB), 1, 5)
	ss := mustSessions(t, g)
	if len(ss) != 1 || ss[0].Internal.PortMode != PortsShared {
		t.Errorf("sessions %+v", ss)
	}
	ngDo(t, c, map[string]any{"command": "delete", "call-id": "shared@test"})
	testutil.WaitFor(t, "the deleted call's sessions to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
}

// TestNGAnswerKeepsOffererProtocol: the offer's transport-protocol flag,
// sent again with the answer (as Kamailio does), does not turn a plain
// offerer's answer into SRTP.
func TestNGAnswerKeepsOffererProtocol(t *testing.T) {
	cfg := ngConfig()
	cfg.Internal.AllowPlain = true
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	flags := map[string]any{"transport-protocol": "RTP/SAVP"}
	toB := mediaOf(t, ngDo(t, c, map[string]any{"command": "offer", "call-id": "plain@test", "from-tag": "a", "sdp": a.sdp("RTP/AVP"), "transport-protocol": "RTP/SAVP"}))
	if toB.Proto != "RTP/SAVP" || len(toB.Crypto) == 0 {
		t.Fatalf("offer to the callee %+v", toB)
	}
	k, _ := parseNGKey(toB.Crypto[0])
	b.key = newBenchKey(t, k.Suite.Name, k.Tag)
	toA := mediaOf(t, ngDo(t, c, map[string]any{"command": "answer", "call-id": "plain@test", "from-tag": "a", "to-tag": "b",
		"sdp": b.sdp("RTP/SAVP"), "transport-protocol": flags["transport-protocol"]}))
	if toA.Proto != "RTP/AVP" || len(toA.Crypto) != 0 {
		t.Errorf("answer to the plain caller %+v", toA)
	}
	// Plain RTP in from the caller comes out as SRTP for the callee.
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, SSRC: 9}, Payload: []byte("plain")}).Marshal()
	if _, err := a.conn.WriteToUDPAddrPort(pkt, addrOf(toA)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = b.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := b.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := k.Context()
	if plain, err := dec.DecryptRTP(nil, buf[:n], nil); err != nil || !strings.HasSuffix(string(plain), "plain") {
		t.Errorf("the callee cannot open what the plain caller sent: %v", err)
	}
}

// TestNGAudioAndVideo: each m= line is a session of its own, with its own
// ports and keys, and media flows on both.
func TestNGAudioAndVideo(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, av := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	b, bv := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	video := func(e *ngEnd) string {
		return fmt.Sprintf("m=video %d RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\n%s\r\n", e.addr().Port(), e.key.CryptoLine())
	}
	offer := ngDo(t, c, map[string]any{"command": "offer", "call-id": "av@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP") + video(av)})
	so, err := ng.ParseSDP([]byte(offer.Str("sdp")))
	if err != nil || len(so.Media) != 2 {
		t.Fatalf("offer: %v", err)
	}
	gwB := [2]ngKey{}
	for i, m := range so.Media {
		k, err := parseNGKey(m.Crypto[0])
		if err != nil {
			t.Fatal(err)
		}
		gwB[i] = k
	}
	answer := ngDo(t, c, map[string]any{"command": "answer", "call-id": "av@test", "from-tag": "a", "to-tag": "b", "sdp": b.sdp("RTP/SAVP") + video(bv)})
	sa, err := ng.ParseSDP([]byte(answer.Str("sdp")))
	if err != nil || len(sa.Media) != 2 {
		t.Fatalf("answer: %v", err)
	}
	through(t, a, b, a.key, gwB[0], addrOf(sa.Media[0]), 1, 3)
	through(t, av, bv, av.key, gwB[1], addrOf(sa.Media[1]), 1, 3)
	ss := mustSessions(t, g)
	if len(ss) != 2 || ss[0].NG == nil || ss[1].NG == nil || ss[0].NG.Media+ss[1].NG.Media != 3 {
		t.Errorf("sessions %+v", ss)
	}
	if bytesEqual(gwB[0].Master, gwB[1].Master) {
		t.Error("audio and video share a key")
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestNGAddressFamily: address-family IP6 toward a leg bound to IPv4 is
// refused, IP4 is fine.
func TestNGAddressFamily(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	ngDo(t, c, map[string]any{"command": "offer", "call-id": "af4@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP"), "address-family": "IP4"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, map[string]any{"command": "offer", "call-id": "af6@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP"), "address-family": "IP6"}); err == nil || !strings.Contains(err.Error(), "address-family") {
		t.Errorf("IP6 toward an IPv4 leg: %v", err)
	}
	if n := g.ng.numCalls(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// TestNGIPv6Leg: a cloud leg on IPv6 with an IPv4 internal leg: each SDP
// carries its recipient's leg's family, and media flows across.
func TestNGIPv6Leg(t *testing.T) {
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip("no IPv6 loopback")
	}
	probe.Close()
	cfg := ngConfig()
	cfg.Cloud.Bind = "::1"
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	bc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	b := &ngEnd{conn: bc, key: newBenchKey(t, "AES_CM_128_HMAC_SHA1_80", 1)}
	bSDP := strings.NewReplacer("IN IP4 ::1", "IN IP6 ::1").Replace(b.sdp("RTP/SAVP"))
	offer := ngDo(t, c, map[string]any{"command": "offer", "call-id": "v6@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP"), "replace": []any{"origin"}})
	if !strings.Contains(offer.Str("sdp"), "c=IN IP6 ::1") || !strings.Contains(offer.Str("sdp"), "o=- 7 7 IN IP6 ::1") {
		t.Fatalf("offer toward the IPv6 leg:\n%s", offer.Str("sdp"))
	}
	toB := mediaOf(t, offer)
	gwB, _ := parseNGKey(toB.Crypto[0])
	answer := ngDo(t, c, map[string]any{"command": "answer", "call-id": "v6@test", "from-tag": "a", "to-tag": "b", "sdp": bSDP, "replace": []any{"origin"}})
	if !strings.Contains(answer.Str("sdp"), "c=IN IP4 127.0.0.1") {
		t.Fatalf("answer toward the IPv4 leg:\n%s", answer.Str("sdp"))
	}
	toA := mediaOf(t, answer)
	through(t, a, b, a.key, gwB, addrOf(toA), 1, 3)
	through(t, b, a, b.key, keyOf(t, toA), addrOf(toB), 1, 3)
}

// TestNGNoScheduledRekey: the legs' scheduled re-keys (here rekey_packets)
// do not apply to ng calls, whose peers learn keys only from the SDP: the
// callee keeps opening everything with the key it was offered.
func TestNGNoScheduledRekey(t *testing.T) {
	cfg := ngConfig()
	cfg.Cloud.RekeyPackets = 16
	cfg.Internal.RekeyPackets = 16
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	toA, toB, gwA, gwB := answeredCall(t, c, "norekey@test", a, b, nil)
	through(t, a, b, a.key, gwB, addrOf(toA), 1, 40)
	through(t, b, a, b.key, gwA, addrOf(toB), 1, 40)
}

// TestNGQueryStatistics: query and delete answer with rtpengine's
// statistics shape, counting what each endpoint sent.
func TestNGQueryStatistics(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	toA, _, _, gwB := answeredCall(t, c, "stats@test", a, b, nil)
	through(t, a, b, a.key, gwB, addrOf(toA), 1, 7)
	q := ngDo(t, c, map[string]any{"command": "query", "call-id": "stats@test", "from-tag": "a"})
	tag, _ := q["tags"].(map[string]any)["a"].(map[string]any)
	medias, _ := tag["medias"].([]any)
	if tag["in dialogue with"] != "b" || len(medias) != 1 {
		t.Fatalf("query: %v", q)
	}
	m := medias[0].(map[string]any)
	st := m["streams"].([]any)[0].(map[string]any)
	stats := st["stats"].(map[string]any)
	ep := st["endpoint"].(map[string]any)
	if m["type"] != "audio" || m["protocol"] != "RTP/SAVP" || m["interface"] != "internal" ||
		st["local port"] != int64(toA.Port) || st["crypto suite"] != "AES_CM_128_HMAC_SHA1_80" ||
		stats["packets"] != int64(7) || ep["port"] != int64(a.addr().Port()) || ep["family"] != "IPv4" {
		t.Errorf("query stream %v, media %v", st, m)
	}
	totals := q["totals"].(map[string]any)["RTP"].(map[string]any)
	if totals["packets"] != int64(7) {
		t.Errorf("totals %v", q["totals"])
	}
	d := ngDo(t, c, map[string]any{"command": "delete", "call-id": "stats@test", "from-tag": "a"})
	if _, ok := d["tags"].(map[string]any)["b"]; !ok {
		t.Errorf("delete reply without the callee's tag: %v", d)
	}
}

// TestNGViaBranchForks: an INVITE forked to two callees (same call-id and
// from-tag, two via-branches) gets a call of its own per branch: its own
// ports and keys toward each callee; an answer, query or delete with a
// via-branch reaches that branch only; a retransmitted offer of a branch
// (a new cookie) gets that branch's ports again; a delete with neither
// via-branch nor to-tag ends every branch.
func TestNGViaBranchForks(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	b1, b2 := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	const id = "fork@test"
	offer := func(via string) ng.Media {
		return mediaOf(t, ngDo(t, c, map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "via-branch": via, "sdp": a.sdp("RTP/SAVP")}))
	}
	to1, to2 := offer("z9hG4bK.1"), offer("z9hG4bK.2")
	if to1.Port == to2.Port {
		t.Fatalf("both branches got port %d", to1.Port)
	}
	suiteKey := func(m ng.Media) ngKey {
		for _, line := range m.Crypto {
			if k, err := parseNGKey(line); err == nil && k.Suite.Name == "AES_CM_128_HMAC_SHA1_80" {
				return k
			}
		}
		t.Fatalf("no AES_CM_128_HMAC_SHA1_80 line: %v", m.Crypto)
		return ngKey{}
	}
	k1, k2 := suiteKey(to1), suiteKey(to2)
	if bytesEqual(k1.Master, k2.Master) {
		t.Fatal("both branches got the same key")
	}
	if again := offer("z9hG4bK.2"); again.Port != to2.Port || !bytesEqual(suiteKey(again).Master, k2.Master) {
		t.Errorf("a repeated offer of branch 2 got port %d, want %d and the same key", again.Port, to2.Port)
	}
	if g.ng.numCalls() != 2 {
		t.Fatalf("%d calls, want one per branch", g.ng.numCalls())
	}
	if l := ngDo(t, c, map[string]any{"command": "list"}); len(l.Strs("calls")) != 1 || l.Strs("calls")[0] != id {
		t.Errorf("list: %v", l)
	}
	answer := func(via, to string, b *ngEnd) ng.Media {
		return (mediaOf(t, ngDo(t, c, map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": to, "via-branch": via, "sdp": b.sdp("RTP/SAVP")})))
	}
	b1.key.Tag, b2.key.Tag = k1.Tag, k2.Tag
	toA2 := answer("z9hG4bK.2", "t2", b2)
	toA1 := answer("z9hG4bK.1", "t1", b1)
	gwA1, gwA2 := keyOf(t, toA1), keyOf(t, toA2)
	if toA1.Port == toA2.Port {
		t.Errorf("both branches face the caller on port %d", toA1.Port)
	}
	if bytesEqual(gwA1.Master, gwA2.Master) {
		t.Fatal("the caller got the same key from both branches")
	}
	// Media of each branch goes to its own callee with its own keys.
	through(t, b2, a, b2.key, gwA2, addrOf(to2), 10, 3)
	through(t, a, b2, a.key, k2, addrOf(toA2), 10, 3)
	through(t, a, b1, a.key, k1, addrOf(toA1), 10, 3)
	through(t, b1, a, b1.key, gwA1, addrOf(to1), 10, 3)

	q := ngDo(t, c, map[string]any{"command": "query", "call-id": id, "via-branch": "z9hG4bK.2"})
	if _, ok := q["tags"].(map[string]any)["t2"]; !ok {
		t.Errorf("query of branch 2 does not show its to-tag: %v", q["tags"])
	}
	ngDo(t, c, map[string]any{"command": "delete", "call-id": id, "from-tag": "a", "via-branch": "z9hG4bK.1"})
	if g.ng.numCalls() != 1 {
		t.Fatalf("%d calls after deleting branch 1, want 1", g.ng.numCalls())
	}
	through(t, b2, a, b2.key, gwA2, addrOf(to2), 20, 2)
	ngDo(t, c, map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "via-branch": "z9hG4bK.3", "sdp": a.sdp("RTP/SAVP")})
	ngDo(t, c, map[string]any{"command": "delete", "call-id": id, "from-tag": "a"})
	if n := g.ng.numCalls(); n != 0 {
		t.Fatalf("%d calls after deleting the call", n)
	}
	testutil.WaitFor(t, "every branch's sessions to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
}
