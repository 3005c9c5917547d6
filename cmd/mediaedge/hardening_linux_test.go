package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// httpGet returns the status and body of url, or an error.
func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricValue returns the value of the sample line that starts with name in
// a Prometheus text exposition, or -1.
func metricValue(body, name string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// tcpAllocate allocates a UDP relay over a TCP connection to server and
// returns the error, closing what it opened.
func tcpAllocate(server, user, pass string, d time.Duration) error {
	nc, err := net.DialTimeout("tcp", server, d)
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: turn.NewSTUNConn(nc),
		Username: user, Password: pass, Realm: "mediaedge.local",
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	rc, err := c.AllocateWithContext(ctx)
	if err != nil {
		return err
	}
	return rc.Close()
}

// TestTCPListenerSurvivesFDExhaustion runs the daemon, lowers its file
// descriptor limit to 200 (prlimit), opens 400 TCP connections that each
// send a Binding so that accept fails with EMFILE, closes them, and checks
// that the TCP listener accepts again: a TURN Allocate over TCP succeeds and
// /readyz says ready. Before the fix pion's accept loop ended on the first
// EMFILE and the listener never accepted again.
func TestTCPListenerSurvivesFDExhaustion(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users"), "alice:alice-password\n", 0o600)
	turnPort, metricsPort := testutil.FreePort(t), testutil.FreePort(t)
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`metrics:
  listen: 127.0.0.1:%[3]d
control:
  socket: %[1]s/me.sock
relay:
  enabled: true
  listeners:
    - {transport: tcp, addr: "127.0.0.1:%[2]d"}
  relay_ip: 127.0.0.1
  auth:
    users_file: users
  limits:
    # Every connection of this test comes from 127.0.0.1 and must stay
    # open until the process is out of file descriptors.
    max_tcp_connections: 0
    max_tcp_connections_per_source: 0
    tcp_auth_timeout: 1m
gateway:
  enabled: false
policy:
  enabled: false
`, dir, turnPort, metricsPort), 0o644)
	c := startChild(t, nil, "run", "--config", cfgPath)
	server := fmt.Sprintf("127.0.0.1:%d", turnPort)
	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _, err := httpGet(base + "/readyz"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready:\n%s", c.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := tcpAllocate(server, "alice", "alice-password", 10*time.Second); err != nil {
		t.Fatalf("allocate before: %v", err)
	}

	pid := c.cmd.Process.Pid
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	low := unix.Rlimit{Cur: 200, Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	binding := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	var conns []net.Conn
	for range 400 {
		nc, err := net.DialTimeout("tcp", server, 5*time.Second)
		if err != nil {
			if errors.Is(err, syscall.EMFILE) {
				break // the test's own limit: enough
			}
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, nc)
		_, _ = nc.Write(binding)
	}
	// The daemon accepts what it can; the rest wait in the backlog while
	// its accept fails with EMFILE. Wait until it holds every descriptor
	// it may (however slowly a busy machine lets it accept), then a little
	// longer for an accept to fail.
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	for deadline := time.Now().Add(30 * time.Second); ; {
		fds, err := os.ReadDir(fdDir)
		if err == nil && len(fds) >= int(low.Cur)-2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon holds %d descriptors after 30s, want %d", len(fds), low.Cur)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	for _, nc := range conns {
		nc.Close()
	}

	// The listener must accept again once descriptors are free.
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if err = tcpAllocate(server, "alice", "alice-password", 5*time.Second); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("allocate over TCP after the descriptors were freed: %v\n%s", err, c.stderr.String())
	}
	code, body, err := httpGet(base + "/readyz")
	if err != nil || code != 200 {
		t.Errorf("/readyz = %d %q %v", code, body, err)
	}
	_, body, err = httpGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(body, "mediaedge_relay_tcp_accept_errors_total"); v <= 0 {
		t.Errorf("accept errors = %v: the test did not exhaust the descriptors", v)
	}
	c.signal(t, syscall.SIGTERM)
	if err := c.wait(t, 15*time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestConfigCheckFIFOSecret checks that `config check` refuses a FIFO at a
// secret path at once, with the usual message. Before the fix it opened the
// FIFO and waited for a writer forever.
func TestConfigCheckFIFOSecret(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "users")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	writeFile(t, cfgPath, "relay:\n  enabled: true\n  auth:\n    users_file: users\n", 0o644)
	c := startChild(t, nil, "config", "check", cfgPath)
	err := c.wait(t, 10*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1", err)
	}
	if want := "secret file " + fifo + " is not a regular file"; !strings.Contains(c.stdout.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, c.stdout.String())
	}
}

// waitLog waits until the child's stderr contains want.
func waitLog(t *testing.T, c *child, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(c.stderr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v:\n%s", want, d, c.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadNeverBlocksShutdown runs the daemon, turns its users file into
// a FIFO and sends SIGHUP: the reload is refused with a clear message.
// Then it turns the configuration file itself into a FIFO (reading it
// blocks until a writer appears, as a hung file system would) and sends
// SIGHUP: the reload hangs, is logged at error after --reload-timeout, and
// SIGTERM still stops the daemon within the drain time. Before the fix the
// first reload blocked the signal loop for good and SIGTERM was ignored.
func TestReloadNeverBlocksShutdown(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	writeFile(t, users, "alice:alice-password\n", 0o600)
	turnPort := testutil.FreePort(t)
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`metrics:
  listen: ""
control:
  socket: %[1]s/me.sock
relay:
  enabled: true
  listeners:
    - {transport: udp, addr: "127.0.0.1:%[2]d"}
  relay_ip: 127.0.0.1
  auth:
    users_file: users
gateway:
  enabled: false
policy:
  enabled: false
`, dir, turnPort), 0o644)
	c := startChild(t, nil, "run", "--config", cfgPath, "--drain", "2s", "--reload-timeout", "1s")
	waitLog(t, c, `msg=ready`, 20*time.Second)

	if err := os.Remove(users); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(users, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	c.signal(t, syscall.SIGHUP)
	waitLog(t, c, "is not a regular file", 10*time.Second)
	if err := turnAllocate(t, fmt.Sprintf("127.0.0.1:%d", turnPort), "alice", "alice-password"); err != nil {
		t.Errorf("the previous credentials stopped working after the refused reload: %v", err)
	}

	if err := os.Remove(cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(cfgPath, 0o600); err != nil {
		t.Fatal(err)
	}
	c.signal(t, syscall.SIGHUP)
	waitLog(t, c, `level=ERROR msg="reload still running`, 10*time.Second)
	t0 := time.Now()
	c.signal(t, syscall.SIGTERM)
	c.wait(t, 10*time.Second) // fails the test if it does not exit
	if el := time.Since(t0); el > 5*time.Second {
		t.Errorf("SIGTERM took %v with --drain 2s", el)
	}
}
