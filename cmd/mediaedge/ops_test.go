package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/testutil"
	"github.com/mediaedge/mediaedge/relay"
)

// opsDaemon is a child daemon with the relay and the gateway on loopback.
type opsDaemon struct {
	*child
	sock    string
	turn    string // TURN server address
	metrics string // metrics address
}

func startOpsDaemon(t *testing.T) *opsDaemon { return startOpsDaemonEnv(t, "  enabled: false\n", nil) }

// startOpsDaemonPolicy is startOpsDaemon with the given policy section
// body.
func startOpsDaemonPolicy(t *testing.T, policy string) *opsDaemon {
	return startOpsDaemonEnv(t, policy, nil)
}

// startOpsDaemonEnv is startOpsDaemonPolicy with extra environment.
func startOpsDaemonEnv(t *testing.T, policy string, env []string) *opsDaemon {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users"), "alice:alice-pw\nbob:bob-pw\n", 0o600)
	turnPort, metricsPort := testutil.FreePort(t), testutil.FreePort(t)
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`metrics:
  listen: 127.0.0.1:%[3]d
control:
  socket: %[1]s/me.sock
relay:
  enabled: true
  listeners:
    - {transport: udp, addr: "127.0.0.1:%[2]d"}
  relay_ip: 127.0.0.1
  allowed_peers: [127.0.0.0/8]
  auth:
    users_file: users
gateway:
  enabled: true
  workers: 1
policy:
%[4]s`, dir, turnPort, metricsPort, policy), 0o644)
	d := &opsDaemon{
		child:   startChild(t, env, "run", "--config", cfgPath, "--drain", "5s"),
		sock:    filepath.Join(dir, "me.sock"),
		turn:    fmt.Sprintf("127.0.0.1:%d", turnPort),
		metrics: fmt.Sprintf("127.0.0.1:%d", metricsPort),
	}
	cl := control.NewClient(d.sock, "")
	defer cl.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st struct {
			Components map[string]struct {
				State string `json:"state"`
			} `json:"components"`
		}
		err := cl.Do(context.Background(), "GET", "/v1/status", nil, &st)
		if err == nil && st.Components["relay"].State == "running" && st.Components["gateway"].State == "running" {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not come up: %v\n%s", err, d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli runs `mediaedge --control SOCK ARGS...` in-process.
func (d *opsDaemon) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&out, &errOut)
	root.SetArgs(append([]string{"--control", d.sock}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func (d *opsDaemon) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.metrics + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// turnSession is a pion client holding one allocation.
type turnSession struct {
	c  *turn.Client
	rc net.PacketConn
}

func allocate(t *testing.T, server, user, pass string) (*turnSession, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: "mediaedge.local", RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := c.AllocateWithContext(ctx)
	if err != nil {
		c.Close()
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() {
		rc.Close()
		c.Close()
		conn.Close()
	})
	return &turnSession{c: c, rc: rc}, nil
}

// countingPeer counts the datagrams it receives.
type countingPeer struct {
	conn *net.UDPConn
	n    atomic.Int64
	done chan struct{}
}

func newCountingPeer(t *testing.T) *countingPeer {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingPeer{conn: pc.(*net.UDPConn), done: make(chan struct{})}
	// Room for a whole burst while the reader is descheduled.
	_ = p.conn.SetReadBuffer(4 << 20)
	go func() {
		defer close(p.done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := p.conn.ReadFrom(buf); err != nil {
				return
			}
			p.n.Add(1)
		}
	}()
	t.Cleanup(func() {
		p.conn.Close()
		<-p.done
	})
	return p
}

// sendPaced sends n datagrams through the allocation to the peer, a few
// at a time.
func sendPaced(t *testing.T, s *turnSession, to net.Addr, n int) {
	t.Helper()
	msg := make([]byte, 160)
	for i := 0; i < n; i++ {
		if _, err := s.rc.WriteTo(msg, to); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%5 == 4 {
			time.Sleep(time.Millisecond)
		}
	}
}

// waitCount waits until the peer has received want datagrams and nothing
// more arrives for a while, then returns what it got.
func (p *countingPeer) waitCount(want int64, bound time.Duration) int64 {
	deadline := time.Now().Add(bound)
	for p.n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // quiet: nothing more in flight
	return p.n.Load()
}

// TestDrainWithLiveMedia drains a daemon that relays a live flow: the flow
// keeps arriving in full, a new Allocate is refused (486), a new gateway
// session is refused (503), /readyz answers 503, and the daemon exits on
// its own once the last allocation is gone.
func TestDrainWithLiveMedia(t *testing.T) {
	d := startOpsDaemon(t)
	peer := newCountingPeer(t)
	live, err := allocate(t, d.turn, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	// The first datagram installs the permission and channel.
	sendPaced(t, live, peer.conn.LocalAddr(), 1)
	if got := peer.waitCount(1, 5*time.Second); got != 1 {
		t.Fatalf("peer got %d datagrams before the drain, want 1", got)
	}
	if code, body := d.readyz(t); code != 200 {
		t.Fatalf("readyz before the drain: %d %s", code, body)
	}

	out, err := d.cli(t, "drain", "--deadline", "2m")
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if !strings.Contains(out, "draining: 1 allocation(s) and 0 session(s) left") {
		t.Errorf("drain printed %q", out)
	}
	if code, body := d.readyz(t); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("readyz while draining: %d %q, want 503 draining", code, body)
	}
	if _, err := allocate(t, d.turn, "bob", "bob-pw"); err == nil || !strings.Contains(err.Error(), "486") {
		t.Errorf("new Allocate while draining: %v, want 486", err)
	}
	cl := control.NewClient(d.sock, "")
	defer cl.Close()
	err = cl.Do(context.Background(), "POST", "/v1/sessions", map[string]any{
		"internal": map[string]any{"rtcp_mux": true},
		"cloud":    map[string]any{"rtcp_mux": true},
	}, nil)
	var ae *control.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || !strings.Contains(ae.Message, "draining") {
		t.Errorf("new session while draining: %v, want 503 draining", err)
	}

	const n = 400
	sendPaced(t, live, peer.conn.LocalAddr(), n)
	if got := peer.waitCount(1+n, 10*time.Second); got != 1+n {
		t.Fatalf("peer got %d of %d datagrams sent during the drain", got-1, n)
	}
	out, err = d.cli(t, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"draining since", "1 allocation(s), 0 session(s) left", "refusing new allocations (draining)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	select {
	case err := <-d.done:
		t.Fatalf("daemon exited with a live allocation: %v", err)
	default:
	}

	live.rc.Close() // pion deallocates (Refresh with lifetime 0)
	if err := d.wait(t, 15*time.Second); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, d.stderr.String())
	}
	logs := d.stderr.String()
	if !strings.Contains(logs, "drain complete") || !strings.Contains(logs, "reason=no_calls_left") {
		t.Errorf("no drain-complete line in the log:\n%s", logs)
	}
}

// TestDrainDeadline: a daemon whose calls outlast the drain's deadline
// stops at the deadline, and `drain --wait` returns when it has exited.
func TestDrainDeadline(t *testing.T) {
	ns := newNotifySocket(t)
	d := startOpsDaemonEnv(t, "  enabled: false\n", []string{"NOTIFY_SOCKET=" + ns.path})
	pings := 0
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if _, err := allocate(t, d.turn, "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	out, err := d.cli(t, "drain", "--deadline", "1s", "--wait")
	if err != nil {
		t.Fatalf("drain --wait: %v\n%s", err, d.stderr.String())
	}
	if !strings.Contains(out, "stopped") {
		t.Errorf("drain --wait printed %q", out)
	}
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "STATUS=draining: 1 allocation(s), 0 session(s) left") {
		t.Errorf("notification after the drain %q, want STATUS=draining", got)
	}
	if got := ns.next(t, &pings); !strings.HasPrefix(got, "STOPPING=1") {
		t.Errorf("notification after the drain status %q, want STOPPING=1", got)
	}
	if el := time.Since(t0); el < time.Second {
		t.Errorf("the daemon stopped after %v, before the deadline", el)
	}
	if err := d.wait(t, 15*time.Second); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	if !strings.Contains(d.stderr.String(), "reason=deadline") {
		t.Errorf("no deadline reason in the log:\n%s", d.stderr.String())
	}
}

// TestTurnKillAndStatusCLI ends allocations through the CLI, by user and
// by id, and reads them back through `turn allocations` and `status`.
func TestTurnKillAndStatusCLI(t *testing.T) {
	d := startOpsDaemon(t)
	var alice []*turnSession
	for i := 0; i < 2; i++ {
		s, err := allocate(t, d.turn, "alice", "alice-pw")
		if err != nil {
			t.Fatal(err)
		}
		alice = append(alice, s)
	}
	bob, err := allocate(t, d.turn, "bob", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.cli(t, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"uptime", "last reload  none since start", "relay        running, 3 allocation(s) of 2 user(s)",
		"gateway      running, 0 of", "policy       disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, err = d.cli(t, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil || st["version"] == nil {
		t.Errorf("status --json: %v\n%s", err, out)
	}

	out, err = d.cli(t, "turn", "kill", "--user", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "killed allocation") != 2 {
		t.Errorf("kill --user alice printed %q", out)
	}
	for i, s := range alice {
		if !portClosedSoon(t, s.rc.LocalAddr()) {
			t.Errorf("alice's allocation %d: relayed address %s still open", i, s.rc.LocalAddr())
		}
	}
	var list relay.AllocationList
	out, err = d.cli(t, "turn", "allocations", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Allocations) != 1 || list.Allocations[0].User != "bob" {
		t.Fatalf("allocations after killing alice's: %v %s", err, out)
	}
	if _, err := d.cli(t, "turn", "kill", "--allocation", fmt.Sprint(list.Allocations[0].ID)); err != nil {
		t.Fatal(err)
	}
	if !portClosedSoon(t, bob.rc.LocalAddr()) {
		t.Errorf("bob's relayed address %s still open", bob.rc.LocalAddr())
	}
	_, err = d.cli(t, "turn", "kill", "--user", "alice")
	var ae *control.APIError
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("killing alice again: %v, want 404", err)
	}
	if _, err := d.cli(t, "turn", "kill"); err == nil {
		t.Error("turn kill without --user or --allocation succeeded")
	}
}

// portClosedSoon reports whether the UDP port at addr closes within a few
// seconds: a datagram sent from a connected socket to a closed port draws
// ICMP port unreachable, which Linux reports as ECONNREFUSED.
func portClosedSoon(t *testing.T, addr net.Addr) bool {
	t.Helper()
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		_, _ = c.Write([]byte("probe"))
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(buf); errors.Is(err, syscall.ECONNREFUSED) {
			return true
		}
	}
	return false
}
