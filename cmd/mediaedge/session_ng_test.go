package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/control"
)

// TestSessionListShowsNGCalls: a call set up over ng shows in `session
// list` with its call-id, m= line and tags, and in `session show` under ng.
func TestSessionListShowsNGCalls(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	srv := control.NewServer(slog.New(slog.DiscardHandler), nil)
	cfg := gateway.DefaultConfig()
	cfg.Workers = 1
	cfg.NG.Listen = "127.0.0.1:0"
	g, err := gateway.New(cfg, component.Deps{Registry: prometheus.NewRegistry(), Control: srv})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := srv.ListenUnix(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())

	c, err := sut.DialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s80, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	sdp := func(port int) string {
		k, _ := srtpcheck.NewKey(s80)
		return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/SAVP 0\r\n%s\r\n", port, k.CryptoLine())
	}
	if _, err := c.Call(ctx, map[string]any{"command": "offer", "call-id": "cli@ng", "from-tag": "ta", "sdp": sdp(30000)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, map[string]any{"command": "answer", "call-id": "cli@ng", "from-tag": "ta", "to-tag": "tb", "sdp": sdp(30002)}); err != nil {
		t.Fatal(err)
	}
	out, err := sessionCLI(t, sock, "list")
	if err != nil || !strings.Contains(out, "NG CALL") || !strings.Contains(out, "cli@ng m=1 audio (ta/tb)") || !strings.Contains(out, " sdes/sdes ") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	out, err = sessionCLI(t, sock, "show", id)
	var s gateway.SessionInfo
	if err != nil || json.Unmarshal([]byte(out), &s) != nil || s.NG == nil || s.NG.CallID != "cli@ng" || s.NG.OffererLeg != "internal" {
		t.Errorf("show: %v\n%s", err, out)
	}
}
