package webrtc

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// edge is a mediaedge daemon the test built from this tree and started:
// the gateway on loopback with its ng listener and control socket. It is
// stopped when the test ends; its log is shown if the test failed.
type edge struct {
	ng  netip.AddrPort
	ctl *control.Client
}

// handshakeTimeout is the gateway's DTLS handshake timeout in the tests:
// shorter than the default 10 s so that a test can wait past it, long
// enough for a first handshake on a busy machine.
const handshakeTimeout = 5 * time.Second

// startEdge builds and starts mediaedge with a gateway whose legs take
// ports from two random blocks of 100 (several tests may run at once).
func startEdge(t *testing.T) *edge {
	t.Helper()
	bin := testutil.BuildMediaedge(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	ng := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(testutil.FreePort(t)))
	base := 20000 + 200*rand.IntN(100)
	cfg := fmt.Sprintf(`# written by e2e/webrtc
log:
  level: debug
metrics:
  listen: ""
control:
  socket: %s
gateway:
  enabled: true
  workers: 1
  internal:
    bind: 127.0.0.1
    ports: %d-%d
  cloud:
    bind: 127.0.0.1
    ports: %d-%d
  ng:
    listen: %s
  dtls:
    handshake_timeout: %s
`, sock, base, base+99, base+100, base+199, ng, handshakeTimeout)
	path := filepath.Join(dir, "mediaedge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := sut.StartProcess(dir, "mediaedge", -1, bin, "run", "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "mediaedge.log"))
			t.Logf("mediaedge log:\n%s", tail(string(b), 8000))
		}
	})
	e := &edge{ng: ng, ctl: control.NewClient(sock, "")}
	t.Cleanup(e.ctl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	if err := p.WaitReady(20*time.Second, func() error { return e.ctl.Do(ctx, "GET", "/v1/status", nil, nil) }); err != nil {
		t.Fatalf("mediaedge did not come up: %v", err)
	}
	testutil.WaitUDPBound(t, int(ng.Port()), 10*time.Second)
	return e
}

// ngCall sends one ng command (as Kamailio's rtpengine module would) and
// returns the reply, or fails t.
func (e *edge) ngCall(t *testing.T, msg map[string]any) map[string]any {
	t.Helper()
	c, err := sut.DialNG(e.ng)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Call(ctx, msg)
	if err != nil {
		t.Fatalf("ng %v: %v", msg["command"], err)
	}
	return r
}

// edgeLeg is the part of a session leg's info (GET /v1/sessions) the test
// reads.
type edgeLeg struct {
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Keying   string `json:"keying"`
	Suite    string `json:"suite"`
	Counters struct {
		PacketsIn    uint64 `json:"packets_in"`
		PacketsOut   uint64 `json:"packets_out"`
		AuthFailures uint64 `json:"auth_failures"`
	} `json:"counters"`
	DTLS *struct {
		State      string `json:"state"`
		Setup      string `json:"setup"`
		Profile    string `json:"profile"`
		Handshakes uint32 `json:"handshakes"`
	} `json:"dtls"`
}

type edgeSession struct {
	ID       string  `json:"id"`
	Internal edgeLeg `json:"internal"`
	Cloud    edgeLeg `json:"cloud"`
}

// sessions lists the gateway's sessions over the control API.
func (e *edge) sessions(t *testing.T) []edgeSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var r struct {
		Sessions []edgeSession `json:"sessions"`
	}
	if err := e.ctl.Do(ctx, "GET", "/v1/sessions", nil, &r); err != nil {
		t.Fatalf("listing sessions: %v", err)
	}
	return r.Sessions
}

// sessionsJSON is the control API's session listing as it comes.
func (e *edge) sessionsJSON(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw json.RawMessage
	if err := e.ctl.Do(ctx, "GET", "/v1/sessions", nil, &raw); err != nil {
		t.Fatalf("listing sessions: %v", err)
	}
	return string(raw)
}

// legs returns the session's DTLS leg and its SDES leg, whichever side
// each is on; ok is false unless there is exactly one of each.
func (s edgeSession) legs() (dtls, sdes edgeLeg, ok bool) {
	switch {
	case s.Internal.Keying == "dtls" && s.Cloud.Keying == "sdes":
		return s.Internal, s.Cloud, true
	case s.Cloud.Keying == "dtls" && s.Internal.Keying == "sdes":
		return s.Cloud, s.Internal, true
	}
	return edgeLeg{}, edgeLeg{}, false
}
