package gateway

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/mediaedge/mediaedge/gateway/ng"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNGForkedAnswers: an INVITE forked after one offer and answered by
// two user agents (to-tags t1 and t2, no via-branch): each answer is
// accepted and the latest carries the media, both ways, under the
// answerer's own key and the gateway's unchanged keys; the caller is
// sent the same ports and key each time; an answer from t1 again takes
// the media back; a delete naming the to-tag that lost (its BYE or
// CANCEL, from either side) leaves the call and the winner's media; a
// delete naming the winner ends the call.
func TestNGForkedAnswers(t *testing.T) {
	cfg := ngConfig()
	cfg.Internal.RekeyGrace, cfg.Cloud.RekeyGrace = 0, 0
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	b1, b2 := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	const id = "forked-answers@test"
	toB := mediaOf(t, ngDo(t, c, map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": a.sdp("RTP/SAVP")}))
	var gwB ngKey
	for _, line := range toB.Crypto {
		if k, err := parseNGKey(line); err == nil && k.Suite.Name == "AES_CM_128_HMAC_SHA1_80" {
			gwB = k
		}
	}
	if gwB.Master == nil {
		t.Fatalf("no AES_CM_128_HMAC_SHA1_80 line offered: %v", toB.Crypto)
	}
	b1.key.Tag, b2.key.Tag = gwB.Tag, gwB.Tag
	answer := func(to string, b *ngEnd) (ng.Media, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := c.Call(ctx, map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": to, "sdp": b.sdp("RTP/SAVP")})
		if err != nil {
			return ng.Media{}, err
		}
		return mediaOf(t, ng.Dict(d)), nil
	}
	mustAnswer := func(to string, b *ngEnd) ng.Media {
		t.Helper()
		m, err := answer(to, b)
		if err != nil {
			t.Fatalf("answer %s: %v", to, err)
		}
		return m
	}
	toA := mustAnswer("t1", b1)
	gwA := keyOf(t, toA)
	through(t, a, b1, a.key, gwB, addrOf(toA), 10, 3)
	through(t, b1, a, b1.key, gwA, addrOf(toB), 10, 3)

	// The second answerer: accepted, and the media is now its.
	toA2 := mustAnswer("t2", b2)
	if addrOf(toA2) != addrOf(toA) || !bytesEqual(keyOf(t, toA2).Master, gwA.Master) {
		t.Errorf("the caller got %s and another key for the second answer; want %s and the same key", addrOf(toA2), addrOf(toA))
	}
	through(t, a, b2, a.key, gwB, addrOf(toA), 20, 3)
	through(t, b2, a, b2.key, gwA, addrOf(toB), 20, 3)
	// The first answerer's key no longer opens the leg (rekey_grace 0).
	sendStale(t, b1, a, b1.key, addrOf(toB))
	keys := map[string][]byte{"caller": a.key.Master, "callee 1": b1.key.Master, "callee 2": b2.key.Master,
		"gateway to caller": gwA.Master, "gateway to callees": gwB.Master}
	for n1, k1 := range keys {
		for n2, k2 := range keys {
			if n1 < n2 && bytesEqual(k1, k2) {
				t.Errorf("the %s and %s keys are the same", n1, n2)
			}
		}
	}
	ss := mustSessions(t, g)
	if len(ss) != 1 {
		t.Fatalf("%d sessions, want 1", len(ss))
	}
	if q := ngDo(t, c, map[string]any{"command": "query", "call-id": id}); q["tags"].(map[string]any)["t2"] == nil {
		t.Errorf("query does not show the current answerer t2: %v", q["tags"])
	}
	// The session (session show and list, the REST session) names the
	// current answerer and the earlier one.
	answerers := func(want string, earlier ...string) {
		t.Helper()
		ss := mustSessions(t, g)
		if len(ss) != 1 || ss[0].NG == nil {
			t.Fatalf("sessions %+v, want one of the ng call", ss)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		one, err := g.Session(ctx, ss[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range []*NGInfo{ss[0].NG, one.NG} {
			if info.ToTag != want || !slices.Equal(info.EarlierToTags, earlier) {
				t.Errorf("session shows to-tag %q, earlier %q; want %q, earlier %q", info.ToTag, info.EarlierToTags, want, earlier)
			}
		}
	}
	answerers("t2", "t1")

	// The first answerer answers again (its 200 after its 183): the
	// media goes back to it.
	mustAnswer("t1", b1)
	through(t, a, b1, a.key, gwB, addrOf(toA), 30, 3)
	through(t, b1, a, b1.key, gwA, addrOf(toB), 30, 3)
	answerers("t1", "t2")

	// t2 loses: the proxy deletes it (its BYE: from-tag t2). The call and
	// t1's media go on.
	ngDo(t, c, map[string]any{"command": "delete", "call-id": id, "from-tag": "t2", "to-tag": "a"})
	if g.ng.numCalls() != 1 || len(mustSessions(t, g)) != 1 {
		t.Fatalf("deleting the losing to-tag ended the call")
	}
	through(t, a, b1, a.key, gwB, addrOf(toA), 40, 3)
	through(t, b1, a, b1.key, gwA, addrOf(toB), 40, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, map[string]any{"command": "query", "call-id": id, "to-tag": "t2"}); err == nil {
		t.Error("query still knows the deleted to-tag t2")
	}
	answerers("t1")

	// The winner's BYE ends the call.
	ngDo(t, c, map[string]any{"command": "delete", "call-id": id, "from-tag": "a", "to-tag": "t1"})
	if n := g.ng.numCalls(); n != 0 {
		t.Fatalf("%d calls after the winner's delete", n)
	}
	testutil.WaitFor(t, "the call's session to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
}

// TestNGForkedAnswerRefused: a forked answer the ports toward the
// answerers cannot carry (another suite, another rtcp-mux choice, a
// disabled stream, the caller's own key) is refused with a reason, and
// the first answer's media goes on untouched.
func TestNGForkedAnswerRefused(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	toA, toB, gwA, gwB := answeredCall(t, c, "fork-refused@test", a, b, map[string]any{"rtcp-mux": []any{"offer"}})
	other := newNGEnd(t, "AES_CM_128_HMAC_SHA1_32")
	same := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	same.key = a.key
	for _, tc := range []struct {
		name, sdp, reason string
	}{
		{"another suite", other.sdp("RTP/SAVP"), "must accept the suite"},
		{"rtcp-mux", b.sdp("RTP/SAVP", "a=rtcp-mux"), "rtcp-mux"},
		{"disabled", strings.Replace(b.sdp("RTP/SAVP"), "m=audio "+strconv.Itoa(int(b.addr().Port())), "m=audio 0", 1), "disable"},
		{"the caller's key", same.sdp("RTP/SAVP"), "same master key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d, err := c.Call(ctx, map[string]any{"command": "answer", "call-id": "fork-refused@test", "from-tag": "a", "to-tag": "t9", "sdp": tc.sdp})
			if err == nil || !strings.Contains(ng.Dict(d).Str("error-reason"), tc.reason) {
				t.Fatalf("answer: %v, want an error containing %q", err, tc.reason)
			}
		})
	}
	through(t, a, b, a.key, gwB, addrOf(toA), 10, 3)
	through(t, b, a, b.key, gwA, addrOf(toB), 10, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, map[string]any{"command": "delete", "call-id": "fork-refused@test", "from-tag": "a", "to-tag": "t9"}); err == nil {
		t.Error("a delete of the refused to-tag t9 succeeded")
	}
	if g.ng.numCalls() != 1 {
		t.Fatalf("%d calls, want 1", g.ng.numCalls())
	}
	// The refused answers left nothing behind: the answerer at the
	// address of the one with the caller's key answers again with a key
	// of its own, and the media goes to that address.
	same.key = newNGKey(t, "AES_CM_128_HMAC_SHA1_80", gwB.Tag)
	ngDo(t, c, map[string]any{"command": "answer", "call-id": "fork-refused@test", "from-tag": "a", "to-tag": "t9", "sdp": same.sdp("RTP/SAVP")})
	through(t, a, same, a.key, gwB, addrOf(toA), 20, 3)
	through(t, same, a, same.key, gwA, addrOf(toB), 20, 3)
}

// sendStale sends one packet under key from src to target and checks
// that nothing reaches dst.
func sendStale(t *testing.T, src, dst *ngEnd, key ngKey, target netip.AddrPort) {
	t.Helper()
	enc, err := key.Context()
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 900, SSRC: 0xabc}, Payload: []byte("stale")}).Marshal()
	ct, err := enc.EncryptRTP(nil, pkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.conn.WriteToUDPAddrPort(ct, target); err != nil {
		t.Fatal(err)
	}
	_ = dst.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := dst.conn.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
		t.Error("a packet under the replaced answerer's key went through")
	}
}
