package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/control"
)

// runCLI runs the command tree in-process and returns stdout, stderr and
// the error main would print.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&out, &errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// TestUnknownSubcommandFails: "session lst" fails with a suggestion
// instead of printing help and exiting 0.
func TestUnknownSubcommandFails(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"session", "lst"}, `did you mean "list"?`},
		{[]string{"turn", "alocations"}, `did you mean "allocations"?`},
		{[]string{"config", "chek", "x.yaml"}, `did you mean "check"?`},
		{[]string{"bench", "trun"}, `did you mean "turn"?`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			if err == nil {
				t.Fatal("exit status 0 for an unknown subcommand")
			}
			if !strings.Contains(err.Error(), "unknown command") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
		})
	}
	// A group without arguments still prints its help.
	out, _, err := runCLI(t, "session")
	if err != nil || !strings.Contains(out, "Available Commands") {
		t.Fatalf("session without a subcommand: err %v, out:\n%s", err, out)
	}
}

// TestUnknownFlagSuggests: an unknown flag names the closest known one.
func TestUnknownFlagSuggests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"session", "list", "--jsn"}, "did you mean --json?"},
		{[]string{"turn", "credentials", "--usr", "alice"}, "did you mean --user?"},
		{[]string{"turn", "allocations", "--contrl", "x"}, "did you mean --control?"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v lacks %q", err, tc.want)
			}
		})
	}
}

// TestErrorPrefixOnce: an error the gateway wraps twice reaches the user
// with one "gateway:" and no "control:" in front of it.
func TestErrorPrefixOnce(t *testing.T) {
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
	b := make([]byte, 30)
	_, _ = rand.Read(b)
	_, _, err = runCLI(t, "--control", sock, "session", "create",
		"--internal-crypto", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+base64.StdEncoding.EncodeToString(b),
		"--cloud-crypto", "a=crypto:1 AEAD_AES_128_GCM inline:"+base64.StdEncoding.EncodeToString(b[:16]))
	if err == nil {
		t.Fatal("a 16-byte key for AEAD_AES_128_GCM was accepted")
	}
	msg := err.Error()
	if strings.Count(msg, "gateway: ") != 1 || strings.Contains(msg, "control: ") {
		t.Fatalf("want one prefix, got %q", msg)
	}
	if !strings.HasPrefix(msg, "gateway: cloud.crypto: a=crypto: key is 16 bytes") {
		t.Fatalf("message %q", msg)
	}
}

// TestSocketPermissionDenied: a user who may not open the control socket
// is told so, not asked whether the daemon runs. As root, the client runs
// as nobody (root would pass any mode).
func TestSocketPermissionDenied(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	srv := control.NewServer(slog.New(slog.DiscardHandler), nil)
	if err := srv.ListenUnix(sock, 0o660); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	const want = "permission denied: join group mediaedge or use sudo"
	if os.Geteuid() != 0 {
		if err := os.Chmod(sock, 0); err != nil {
			t.Fatal(err)
		}
		_, _, err := runCLI(t, "--control", sock, "turn", "allocations")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v lacks %q", err, want)
		}
		return
	}
	// The test binary must be reachable by nobody.
	bin := copyExecutable(t, os.Args[0])
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--control", sock, "turn", "allocations")
	cmd.Env = append(os.Environ(), "MEDIAEDGE_TEST_EXEC=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), want) {
		t.Fatalf("as nobody: err %v, output:\n%s", err, out)
	}
	if strings.Contains(string(out), "is the daemon running") {
		t.Fatalf("asks whether the daemon runs:\n%s", out)
	}
}

// copyExecutable copies path into a directory anyone may read and returns
// the copy.
func copyExecutable(t *testing.T, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mediaedge-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(path))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestRunBannerLast: make run's credentials come in a short banner after
// the last start-up log line, not among them; it names the control socket
// and what to try next.
func TestRunBannerLast(t *testing.T) {
	rt := t.TempDir()
	var args []string
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		// The embedded default binds fixed loopback ports: a network
		// namespace of its own keeps other daemons on this machine out.
		unshare, err1 := exec.LookPath("unshare")
		ip, err2 := exec.LookPath("ip")
		if err1 == nil && err2 == nil {
			cmd = exec.Command(unshare, "--net", "--", "/bin/sh", "-c", ip+` link set lo up && exec "$0" run`, os.Args[0])
		}
	}
	if cmd == nil {
		args = []string{"run"}
		cmd = exec.Command(os.Args[0], args...)
	}
	var out lockedBuffer
	cmd.Env = append(os.Environ(), "MEDIAEDGE_TEST_EXEC=1", "RUNTIME_DIRECTORY="+rt)
	cmd.Stdout, cmd.Stderr = &out, &out // one stream: the order as a terminal shows it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "config default > mediaedge.yaml") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner within 15s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := out.String()
	ready, creds := strings.Index(s, "msg=ready"), strings.Index(s, "demo / ")
	if ready < 0 || creds < ready {
		t.Fatalf("credentials at %d, ready at %d: the banner must follow the log:\n%s", creds, ready, s)
	}
	banner := s[ready:]
	for _, want := range []string{"control socket  " + filepath.Join(rt, control.SocketName), "Try, in another terminal:", "loopback peers"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	if n := strings.Count(banner, "\n"); n > 16 {
		t.Errorf("banner is %d lines, want a short one:\n%s", n, banner)
	}
}

// TestTurnCredentialsWithoutConfig: without --config and without an
// installed file, turn credentials falls back to the embedded default (and
// says so) instead of failing on the missing file; a missing --config file
// is named once.
func TestTurnCredentialsWithoutConfig(t *testing.T) {
	dir := t.TempDir()
	old := installedConfigPath
	installedConfigPath = filepath.Join(dir, "absent.yaml")
	defer func() { installedConfigPath = old }()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, stderr, err := runCLI(t, "turn", "credentials", "--user", "alice", "--secret-file", secret)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "embedded default") || !strings.Contains(out, "uri:      turn:127.0.0.1:3478") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, stderr)
	}

	_, _, err = runCLI(t, "turn", "credentials", "--user", "alice")
	if err == nil || strings.Contains(err.Error(), "absent.yaml") || !strings.Contains(err.Error(), "no REST shared secret") {
		t.Errorf("without a secret: %v", err)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, _, err = runCLI(t, "turn", "credentials", "--user", "alice", "--config", missing)
	if err == nil || strings.Count(err.Error(), missing) != 1 {
		t.Errorf("missing --config file: %v (want the path once)", err)
	}
}

// TestBenchPIDSeveral: `--pid $(pidof mediaedge)` with two daemons says
// what to do instead of "unknown command".
func TestBenchPIDSeveral(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "srtp", "--gateway", "--pid", "12", "34"},
		{"bench", "turn", "--pid", "12", "34"},
		{"bench", "srtp", "--gateway", "--pid", "12 34"},
	} {
		_, _, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), "pidof -s mediaedge") {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// TestPolicyPlanWithoutConfig: policy plan without --config and without an
// installed file plans the embedded default (and says so) instead of
// failing on the missing file.
func TestPolicyPlanWithoutConfig(t *testing.T) {
	old := installedConfigPath
	installedConfigPath = filepath.Join(t.TempDir(), "absent.yaml")
	defer func() { installedConfigPath = old }()
	out, stderr, err := runCLI(t, "policy", "plan")
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "embedded default") || !strings.Contains(out, "ip -4 rule add") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, stderr)
	}
}
