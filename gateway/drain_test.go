//go:build linux

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

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
