package policy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
)

// helperEnv names the configuration file of a helper process: the test
// binary re-executed (under `ip netns exec`) to run a Manager the way the
// daemon does, so that a test can SIGKILL it.
const helperEnv = "MEDIAEDGE_POLICY_HELPER_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(runHelper(path))
	}
	goleak.VerifyTestMain(m)
}

// runHelper runs a Manager on the configuration at path in the current
// network namespace until SIGTERM, printing "ready" once started.
func runHelper(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(data, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	m, err := New(cfg, component.Deps{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if err := m.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 1
	}
	fmt.Println("ready")
	<-sigs
	if err := m.Close(); err != nil {
		return 1
	}
	return 0
}

// helper is a running helper process.
type helper struct {
	cmd *exec.Cmd
}

// startHelper runs the Manager with cfg in the edge namespace and waits
// until it reports ready.
func (tp *topo) startHelper(cfg Config) *helper {
	tp.t.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		tp.t.Fatal(err)
	}
	path := filepath.Join(tp.t.TempDir(), "policy.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tp.t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		tp.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", tp.ns(roleEdge), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tp.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tp.t.Fatal(err)
	}
	h := &helper{cmd: cmd}
	tp.t.Cleanup(func() { h.kill() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("helper said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			h.kill()
			tp.t.Fatalf("helper: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		h.kill()
		tp.t.Fatalf("helper not ready after 10s\n%s", stderr.String())
	}
	return h
}

// kill sends SIGKILL: no clean-up runs, as after a crash or an OOM kill.
func (h *helper) kill() {
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	_ = h.cmd.Wait()
}

// ownedState returns the edge's lines in protocol 77, sorted, and how
// many times each appears.
func (tp *topo) ownedState() []string {
	tp.t.Helper()
	var out []string
	for _, l := range strings.Split(tp.ipState(), "\n") {
		if strings.Contains(l, "proto 77") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	slices.Sort(out)
	return out
}

func duplicates(lines []string) []string {
	var d []string
	for i := 1; i < len(lines); i++ {
		if lines[i] == lines[i-1] {
			d = append(d, lines[i])
		}
	}
	return d
}

// TestKernelCrashRestart kills the daemon's Manager with SIGKILL (its rules
// stay), restarts it with the same configuration (no duplicates) and with
// another layout (nothing of the old one left), and flushes (the kernel's
// rules and a foreign rule untouched).
func TestKernelCrashRestart(t *testing.T) {
	needKernel(t, false)
	tp := newTopo(t)
	tp.ipn(roleEdge, "rule", "add", "pref", "500", "lookup", "220", "protocol", "static")
	pristine := tp.ipState()

	cfgA := kernelConfig()
	h := tp.startHelper(cfgA)
	first := tp.ownedState()
	if len(first) < 10 {
		t.Fatalf("helper installed only:\n%s", strings.Join(first, "\n"))
	}
	h.kill()
	if got := tp.ownedState(); !slices.Equal(got, first) {
		t.Fatalf("state changed by SIGKILL:\n%s", strings.Join(got, "\n"))
	}

	h = tp.startHelper(cfgA)
	if got := tp.ownedState(); !slices.Equal(got, first) {
		t.Errorf("restart with the same configuration changed the state:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(first, "\n"))
	}
	h.kill()

	cfgB := kernelConfig()
	cfgB.Priority, cfgB.Tables = 2000, TablesConfig{Media: 110, Direct: 111}
	cfgB.Media.Presets = []string{"zoom"}
	tp.startHelper(cfgB).kill()
	got := tp.ownedState()
	if d := duplicates(got); len(d) > 0 {
		t.Errorf("duplicates after restart:\n%s", strings.Join(d, "\n"))
	}
	for _, l := range got {
		if strings.Contains(l, "lookup 100") || strings.Contains(l, "lookup 101") || strings.Contains(l, "table 100 ") ||
			strings.Contains(l, "table 101 ") || strings.Contains(l, " 1000:") || strings.Contains(l, "52.112.0.0/14") {
			t.Errorf("left over from the first layout: %s", l)
		}
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, " 2010:") }) {
		t.Errorf("second layout missing:\n%s", strings.Join(got, "\n"))
	}

	cmds, err := flushIn(nsHandle{ns: tp.handle(roleEdge)}, 77)
	if err != nil || len(cmds) == 0 {
		t.Fatalf("flush: %d commands, %v", len(cmds), err)
	}
	if after := tp.ipState(); after != pristine {
		t.Errorf("after flush:\n%s\nwant:\n%s", after, pristine)
	}
}

// TestKernelBadInput reloads a running Manager with configurations it must
// refuse and checks that each is refused with a clear error and that the
// kernel keeps the previous rule set, then that a good reload applies.
func TestKernelBadInput(t *testing.T) {
	needKernel(t, false)
	tp := newTopo(t)
	m := tp.manager(kernelConfig(), nil)
	good := tp.ipState()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	malformed := write("bad.json", `{"format": "mediaedge-media-v1", "prefixes": ["192.0.2.0/24",]}`)
	hostBits := write("hostbits.json", `{"format": "mediaedge-media-v1", "source": "x", "prefixes": ["192.0.2.1/24"], "udp_ports": []}`)
	overlapFile := write("overlap.json", `{"format": "mediaedge-media-v1", "source": "x", "prefixes": ["52.112.0.0/14"], "udp_ports": ["3478-3481"]}`)

	for _, c := range []struct {
		name string
		mut  func(*Config)
		want error
		msg  string
	}{
		{"unknown interface", func(c *Config) { c.Uplink.Interface = "wan9" }, ErrUplinkNotFound, `"wan9"`},
		{"IPv6 prefix with only IPv4 routed", func(c *Config) {
			c.Families = []Family{FamilyIPv4}
			c.Media.Prefixes = []config.Prefix{{Prefix: mustPrefix("2001:db8::/32")}}
		}, nil, "2001:db8::/32 is IPv6 but ipv6 is not in families"},
		{"IPv6 gateway in gateway4", func(c *Config) { c.Uplink.Gateway4 = "2001:db8:100::1" }, nil, "put it in uplink.gateway6"},
		{"preset listed twice", func(c *Config) { c.Media.Presets = []string{"teams", "teams"} }, nil, "listed twice"},
		{"extra prefix inside a preset", func(c *Config) {
			c.Media.Prefixes = []config.Prefix{{Prefix: mustPrefix("52.112.0.0/16")}}
		}, nil, "52.112.0.0/14 (preset teams) and 52.112.0.0/16"},
		{"media file overlapping a preset", func(c *Config) { c.Media.File = overlapFile }, ErrOverlap, "media.file"},
		{"malformed media file", func(c *Config) { c.Media.File = malformed }, ErrMediaFile, "line 1 column"},
		{"media file prefix with host bits", func(c *Config) { c.Media.File = hostBits }, ErrMediaFile, "host bits"},
		{"missing media file", func(c *Config) { c.Media.File = filepath.Join(dir, "nope.json") }, ErrMediaFile, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := kernelConfig()
			c.mut(&cfg)
			err := m.Reload(t.Context(), cfg)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("reload: err = %v, want %v mentioning %q", err, c.want, c.msg)
			}
			if got := tp.ipState(); got != good {
				t.Errorf("kernel changed after a refused reload:\n%s", got)
			}
		})
	}
	// A good reload after the refused ones applies.
	okFile := write("ok.json", `{"format": "mediaedge-media-v1", "source": "test", "prefixes": ["192.0.2.0/24"], "udp_ports": ["3478"]}`)
	cfg := kernelConfig()
	cfg.Media.File = okFile
	if err := m.Reload(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tp.ipn(roleEdge, "route", "show", "table", "100"), "192.0.2.0/24 via 198.51.100.1") {
		t.Errorf("good reload not applied:\n%s", tp.ipn(roleEdge, "route", "show", "table", "100"))
	}
	// Starting on an unknown interface fails.
	bad := kernelConfig()
	bad.Uplink.Interface = "wan9"
	hk := defaultHooks(nsHandle{ns: tp.handle(roleEdge)})
	m2, err := newManager(bad, component.Deps{Logger: testLogger(t)}, hk)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Start(t.Context()); !errors.Is(err, ErrUplinkNotFound) {
		t.Errorf("start on wan9: %v, want ErrUplinkNotFound", err)
	}
	// The refused Manager's Close must leave the running rule set alone.
	before := tp.ipState()
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if after := tp.ipState(); after != before {
		t.Errorf("closing a Manager whose start was refused changed the kernel:\n%s", after)
	}
}
