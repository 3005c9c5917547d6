package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestDrainRefusesNewSessions: after Drain, Create fails with ErrDraining
// while a live call keeps being re-keyed both ways and can be deleted.
func TestDrainRefusesNewSessions(t *testing.T) {
	g := startGateway(t, testConfig())
	live := newCall(t, g, suiteAES128SHA80, suiteAEAD128, true)
	g.Drain()
	g.Drain()
	if !g.Draining() || g.Active() != 1 {
		t.Fatalf("Draining %v Active %d, want true 1", g.Draining(), g.Active())
	}
	_, err := g.Create(context.Background(), CreateRequest{
		Internal: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80)},
		Cloud:    LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80)},
	})
	if !errors.Is(err, ErrDraining) {
		t.Fatalf("Create while draining: %v, want ErrDraining", err)
	}
	live.exchange(t, 5, 0x2222)
	if st := g.Status(); !st.Draining {
		t.Error("status does not say draining")
	}
	if err := g.Delete(context.Background(), live.info.ID); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "no sessions", 5*time.Second, func() bool { return g.Active() == 0 })
}

// TestDrainAPIAnswers503: the control API answers a session request
// while draining with 503 and the reason.
func TestDrainAPIAnswers503(t *testing.T) {
	g, srv := apiGateway(t, testConfig())
	g.Drain()
	body, _ := json.Marshal(CreateRequest{
		Internal: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80)},
		Cloud:    LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80)},
	})
	code, out := do(t, srv, "POST", "/v1/sessions", string(body))
	if code != 503 || errCode(t, out) != "unavailable" || !strings.Contains(string(out), "draining") {
		t.Fatalf("answer %d %s, want 503 unavailable with the reason", code, out)
	}
}

// TestDrainRefusesNewNGCalls: while draining, an ng offer for a new call
// gets an error reply, and a re-offer of a live call still works.
func TestDrainRefusesNewNGCalls(t *testing.T) {
	g := startGateway(t, ngConfig())
	conn := ngDial(t, g)
	offer := func(cookie, callID string) ng.Dict {
		return replyDict(t, ngRaw(t, conn, ngMessage(t, cookie, map[string]any{"command": "offer", "call-id": callID, "from-tag": "a1", "sdp": testOfferSDP}), 2*time.Second))
	}
	if d := offer("d1", "live@test"); d.Str("result") != "ok" {
		t.Fatalf("offer before the drain: %v", d)
	}
	g.Drain()
	if d := offer("d2", "new@test"); d.Str("result") != "error" || !strings.Contains(d.Str("error-reason"), "draining") {
		t.Errorf("offer of a new call while draining: %v, want an error saying draining", d)
	}
	if d := offer("d3", "live@test"); d.Str("result") != "ok" {
		t.Errorf("re-offer of a live call while draining: %v", d)
	}
	if n := g.ng.numCalls(); n != 1 {
		t.Errorf("%d calls, want the live one", n)
	}
}
