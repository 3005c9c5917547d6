package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/control"
)

// sessionCLI runs `mediaedge --control SOCK session ARGS...`.
func sessionCLI(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&out, &errOut)
	root.SetArgs(append([]string{"--control", sock, "session"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestSessionCommands(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	srv := control.NewServer(slog.New(slog.DiscardHandler), nil)
	cfg := gateway.DefaultConfig()
	cfg.Workers = 1
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

	key := func() string {
		b := make([]byte, 30)
		_, _ = rand.Read(b)
		return "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(b)
	}
	out, err := sessionCLI(t, sock, "create", "--id", "cli-1", "--rtcp-mux", "--internal-crypto", key(),
		"--cloud-crypto", key(), "--cloud-remote", "127.0.0.1:9", "--cloud-suite", "AEAD_AES_128_GCM")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	for _, re := range []string{`session cli-1`, `internal:\n  local:      127\.0\.0\.1:\d+`,
		`a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:\S+`, `a=crypto:1 AEAD_AES_128_GCM inline:\S+`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("create output lacks %s:\n%s", re, out)
		}
	}
	// A session with a DTLS leg toward a WebRTC peer.
	fp := "sha-256 " + strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	if out, err := sessionCLI(t, sock, "create", "--id", "cli-web", "--internal-keying", "dtls", "--internal-fingerprint", fp,
		"--internal-setup", "active", "--internal-no-ice", "--cloud-crypto", key(), "--rtcp-mux"); err != nil {
		t.Fatalf("create with a DTLS leg: %v\n%s", err, out)
	}
	out, err = sessionCLI(t, sock, "list")
	if err != nil || !strings.Contains(out, "cli-1") || !strings.Contains(out, "127.0.0.1:9") || !strings.Contains(out, "2 session(s)") {
		t.Errorf("list: %v\n%s", err, out)
	}
	// KEYING is the third column: internal/cloud.
	keying := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 {
			keying[f[0]] = f[2]
		}
	}
	if keying["ID"] != "KEYING" || keying["cli-1"] != "sdes/sdes" || keying["cli-web"] != "dtls/sdes" {
		t.Errorf("list: keying column %v, want sdes/sdes for cli-1 and dtls/sdes for cli-web\n%s", keying, out)
	}
	if out, err := sessionCLI(t, sock, "delete", "cli-web"); err != nil {
		t.Fatalf("delete cli-web: %v\n%s", err, out)
	}
	out, err = sessionCLI(t, sock, "show", "cli-1")
	var s gateway.SessionInfo
	if err != nil || json.Unmarshal([]byte(out), &s) != nil || s.ID != "cli-1" || strings.Contains(out, "inline:") {
		t.Errorf("show: %v\n%s", err, out)
	}
	out, err = sessionCLI(t, sock, "rekey", "cli-1", "--leg", "cloud")
	if err != nil || !regexp.MustCompile(`a=crypto:1 AEAD_AES_128_GCM inline:\S+\nleg cloud, key epoch 2`).MatchString(out) {
		t.Errorf("rekey: %v\n%s", err, out)
	}
	if out, err = sessionCLI(t, sock, "update", "cli-1", "--internal-remote", "127.0.0.1:7"); err != nil || !strings.Contains(out, `"remote": "127.0.0.1:7"`) {
		t.Errorf("update: %v\n%s", err, out)
	}
	if out, err = sessionCLI(t, sock, "events"); err != nil || !strings.Contains(out, `"type":"rekeyed"`) {
		t.Errorf("events: %v\n%s", err, out)
	}
	if out, err = sessionCLI(t, sock, "delete", "cli-1"); err != nil || out != "deleted cli-1\n" {
		t.Errorf("delete: %v\n%s", err, out)
	}
	if _, err = sessionCLI(t, sock, "show", "cli-1"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("show after delete: err = %v, want not_found", err)
	}
	if _, err = sessionCLI(t, sock, "create", "--internal-crypto", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:short"); err == nil ||
		!strings.Contains(err.Error(), "bad_request") {
		t.Errorf("create with a bad key: err = %v, want bad_request", err)
	}
}
