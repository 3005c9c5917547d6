package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/control"
)

// TestMain lets the tests run the real command in a child process: the test
// binary re-executes itself with MEDIAEDGE_TEST_EXEC=1 and behaves as
// mediaedge, receiving real signals and talking to a real NOTIFY_SOCKET.
func TestMain(m *testing.M) {
	if os.Getenv("MEDIAEDGE_TEST_EXEC") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// child is a mediaedge process started by a test.
type child struct {
	cmd    *exec.Cmd
	stdout lockedBuffer
	stderr lockedBuffer
	done   chan error
}

func startChild(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	return startChildCmd(t, exec.Command(os.Args[0], args...), env)
}

func startChildCmd(t *testing.T, cmd *exec.Cmd, env []string) *child {
	t.Helper()
	c := &child{cmd: cmd, done: make(chan error, 1)}
	c.cmd.Env = append(append(os.Environ(), "MEDIAEDGE_TEST_EXEC=1"), env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("child stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

func (c *child) signal(t *testing.T, s os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// wait returns the child's exit error within d, failing the test otherwise.
func (c *child) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(d):
		t.Fatalf("process did not exit within %v", d)
	}
	return nil
}

// notifySocket is a fake systemd notification socket.
type notifySocket struct {
	conn *net.UnixConn
	path string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{conn: conn, path: path}
}

// next returns the next notification that is not a watchdog ping, counting
// the pings it skips.
func (n *notifySocket) next(t *testing.T, pings *int) string {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.conn.SetReadDeadline(deadline)
		k, err := n.conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for a notification: %v", err)
		}
		msg := string(buf[:k])
		if msg == "WATCHDOG=1" {
			*pings++
			continue
		}
		return msg
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func getConfig(t *testing.T, sock string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://mediaedge/v1/config?format=yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}

// TestNotifyProtocolAndSignals runs the real command under a fake
// NOTIFY_SOCKET and checks the order of READY, RELOADING, STOPPING and
// WATCHDOG around real SIGHUP and SIGTERM, that an invalid file is refused
// on reload while the old configuration keeps running, and that a valid
// reload applies.
func TestNotifyProtocolAndSignals(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "me.sock")
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	base := fmt.Sprintf("metrics:\n  listen: 127.0.0.1:0\ncontrol:\n  socket: %s\n", sock)
	writeFile(t, cfgPath, base+"log:\n  level: info\n", 0o644)
	ns := newNotifySocket(t)
	c := startChild(t, []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=200000"}, "run", "--config", cfgPath)

	pings := 0
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("first notification = %q, want READY=1", got)
	}
	// Watchdog pings every WatchdogSec/2 while running.
	deadline := time.Now().Add(3 * time.Second)
	buf := make([]byte, 512)
	for pings < 2 && time.Now().Before(deadline) {
		ns.conn.SetReadDeadline(deadline)
		if k, err := ns.conn.Read(buf); err == nil && string(buf[:k]) == "WATCHDOG=1" {
			pings++
		}
	}
	if pings < 2 {
		t.Fatalf("got %d watchdog pings in 3s with WATCHDOG_USEC=200000", pings)
	}

	// An invalid file: RELOADING, then READY again, the old config kept.
	writeFile(t, cfgPath, base+"log:\n  level: debug\n  bogus: true\nrelay:\n  enabled: perhaps\n", 0o644)
	c.signal(t, syscall.SIGHUP)
	got := ns.next(t, &pings)
	if !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after SIGHUP got %q, want RELOADING=1 with MONOTONIC_USEC", got)
	}
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("after the refused reload got %q, want READY=1", got)
	}
	if cfg := getConfig(t, sock); !strings.Contains(cfg, "level: info") {
		t.Errorf("invalid reload changed the running configuration:\n%s", cfg)
	}
	wants := []string{
		`reload refused: configuration invalid; keeping the running configuration`,
		`problem="log: unknown key \"bogus\" (line 7)"`,
		`problem="relay.enabled: want true or false, got string \"perhaps\" (line 9)"`,
	}
	// The log lines travel through a pipe, READY=1 through the notify
	// socket: give the pipe a moment to catch up.
	logs := c.stderr.String()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs, wants[len(wants)-1]) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		logs = c.stderr.String()
	}
	for _, want := range wants {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}

	// A valid file applies.
	writeFile(t, cfgPath, base+"log:\n  level: debug\n", 0o644)
	c.signal(t, syscall.SIGHUP)
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "RELOADING=1") {
		t.Fatalf("second reload: got %q", got)
	}
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("after the second reload got %q", got)
	}
	if cfg := getConfig(t, sock); !strings.Contains(cfg, "level: debug") {
		t.Errorf("valid reload not applied:\n%s", cfg)
	}

	// SIGTERM: STOPPING, then a clean exit within 2 s.
	t0 := time.Now()
	c.signal(t, syscall.SIGTERM)
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "STOPPING=1") {
		t.Fatalf("after SIGTERM got %q, want STOPPING=1", got)
	}
	if err := c.wait(t, 5*time.Second); err != nil {
		t.Fatalf("exit: %v\n%s", err, c.stderr.String())
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Errorf("graceful stop took %v, want < 2s", el)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left behind")
	}
}

// TestRunEmbeddedDefault runs `mediaedge run` with no configuration, as
// `make run` does, and stops it with SIGINT (Ctrl-C).
//
// The embedded default binds fixed loopback ports (3478, 9477, ...). As
// root, the child runs in a network namespace of its own so that a daemon
// or benchmark already using those ports on this machine cannot collide
// with it.
func TestRunEmbeddedDefault(t *testing.T) {
	rt := t.TempDir()
	args := []string{"run"}
	if os.Geteuid() == 0 {
		if unshare, err := exec.LookPath("unshare"); err == nil {
			if ip, err := exec.LookPath("ip"); err == nil {
				args = []string{"-c", ip + ` link set lo up && exec "$0" run`, os.Args[0]}
				c := startChildCmd(t, exec.Command(unshare, append([]string{"--net", "--", "/bin/sh"}, args...)...), []string{"RUNTIME_DIRECTORY=" + rt})
				checkEmbeddedDefault(t, c, rt)
				return
			}
		}
	}
	checkEmbeddedDefault(t, startChild(t, []string{"RUNTIME_DIRECTORY=" + rt}, args...), rt)
}

func checkEmbeddedDefault(t *testing.T, c *child, rt string) {
	sock := filepath.Join(rt, control.SocketName)
	cl := control.NewClient(sock, "")
	defer cl.Close()
	var st daemon.StatusReport
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cl.Do(context.Background(), "GET", "/v1/status", nil, &st)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not answering on %s: %v\n%s", sock, err, c.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.ConfigFile != "(embedded default)" {
		t.Errorf("config file = %q", st.ConfigFile)
	}
	t0 := time.Now()
	c.signal(t, syscall.SIGINT)
	if err := c.wait(t, 5*time.Second); err != nil {
		t.Fatalf("exit: %v\n%s", err, c.stderr.String())
	}
	if el := time.Since(t0); el > 2*time.Second {
		t.Errorf("Ctrl-C took %v to stop, want < 2s", el)
	}
}

func TestConfigCheckExitStatus(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "metrics:\n  listen: 127.0.0.1:70000\nlog:\n  level: loud\n", 0o644)
	c := startChild(t, nil, "config", "check", bad)
	err := c.wait(t, 10*time.Second)
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1", err)
	}
	out := c.stdout.String()
	for _, want := range []string{
		bad + ": metrics.listen: port 70000 out of range (line 2)",
		bad + `: log.level: "loud" is not one of debug, info, warn, error (line 4)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "log:\n  level: warn\n", 0o644)
	c = startChild(t, nil, "config", "check", good)
	if err := c.wait(t, 10*time.Second); err != nil || !strings.Contains(c.stdout.String(), "OK") {
		t.Fatalf("good file: %v %s", err, c.stdout.String())
	}
}

// TestSecretFilePermissionRefused checks that run refuses a token file that
// others can read, naming the file and the fix, and exits with status 2.
func TestSecretFilePermissionRefused(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	writeFile(t, tok, "tok-6b1c0f", 0o644)
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("control:\n  socket: %s/me.sock\n  tcp_listen: 127.0.0.1:0\n  token_file: %s\n", dir, tok), 0o644)
	c := startChild(t, nil, "run", "--config", cfgPath)
	err := c.wait(t, 10*time.Second)
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2", err)
	}
	errOut := c.stderr.String()
	want := fmt.Sprintf("control.token_file: secret file %s is accessible by group or others (mode 0644); run: chmod 600 %s (line 4)", tok, tok)
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
	if strings.Contains(errOut, "tok-6b1c0f") {
		t.Error("the secret appears in the output")
	}
}
