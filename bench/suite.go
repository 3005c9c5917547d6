package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/report"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/internal/control"
)

// SuiteOptions configure the standard suite behind `make bench`.
type SuiteOptions struct {
	// OutDir receives report.md, the SVG plots, report.json and the logs of
	// the processes started.
	OutDir string
	// Mediaedge is the mediaedge binary to start as the system under test;
	// empty skips mediaedge.
	Mediaedge string
	// Peers adds coturn and rtpengine (when installed) to the same run.
	Peers bool
	// Quick shortens every trial (for smoke tests).
	Quick bool
	// Log receives one line per trial; nil discards.
	Log io.Writer
}

// suiteCase is one cell of the standard matrix.
type suiteCase struct {
	kind    string // "gateway" or "relay"
	streams int    // streams per direction, or allocations
	size    int
	max     bool // max rate (windowed) instead of the fixed realistic rate
}

func (c suiteCase) String() string {
	mode := "50 pps/stream"
	if c.max {
		mode = "max rate"
	}
	if c.kind == "relay" {
		return fmt.Sprintf("N=%d L=%d %s", c.streams, c.size, mode)
	}
	return fmt.Sprintf("S=%d L=%d %s", c.streams, c.size, mode)
}

func (c suiteCase) file() string {
	m := "fixed"
	if c.max {
		m = "max"
	}
	return fmt.Sprintf("%s-%d-%d-%s.svg", c.kind, c.streams, c.size, m)
}

// suiteRow is one trial's outcome.
type suiteRow struct {
	Target string         `json:"target"`
	Case   string         `json:"case"`
	Report *report.Report `json:"report,omitempty"`
	Error  string         `json:"error,omitempty"`
	c      suiteCase
}

// gwTarget sets up flows on one SRTP gateway for S streams per direction.
type gwTarget struct {
	name  string
	pid   int
	rtcp  int
	setup func(ctx context.Context, S int, a, b netip.AddrPort) ([]load.Flow, func(), error)
}

type turnTarget struct {
	name string
	opt  load.TURNOptions
}

// RunSuite runs the standard suite: the gateway with 1 and 100 streams of
// 160 and 1200 bytes and the relay with 1, 10 and 100 allocations, each at
// a realistic fixed rate and at the highest rate a bounded window allows,
// against mediaedge and, when installed, rtpengine and coturn in the same
// run. It writes OutDir/report.md with tables, same-run ratios and plots.
// Every process it starts is stopped before it returns.
func RunSuite(ctx context.Context, opt SuiteOptions) error {
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	if err := os.MkdirAll(opt.OutDir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(opt.OutDir)
	if err != nil {
		return err
	}
	// bench on CPU 0, every system under test on CPU 1: each figure is
	// "one core" and the load generator does not steal from the server.
	sutCPU := -1
	if runtime.NumCPU() >= 2 && pinToCPU(0) {
		sutCPU = 1
	}
	var (
		gws    []gwTarget
		turns  []turnTarget
		notes  []string
		procs  []*sut.Process
		envLns = suiteEnvironment()
	)
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop()
		}
	}()
	if opt.Mediaedge != "" {
		p, gw, tt, err := startMediaedge(ctx, dir, opt.Mediaedge, sutCPU)
		if p != nil {
			procs = append(procs, p)
		}
		if err != nil {
			notes = append(notes, "mediaedge skipped: "+err.Error())
		} else {
			if gw != nil {
				gws = append(gws, *gw)
			} else {
				notes = append(notes, "mediaedge gateway skipped: the daemon answers no session API")
			}
			turns = append(turns, tt)
		}
	}
	if opt.Peers {
		if p, gw, err := startRtpengine(dir, sutCPU); err != nil {
			notes = append(notes, "rtpengine skipped: "+err.Error())
		} else {
			procs = append(procs, p)
			gws = append(gws, gw)
			envLns = append(envLns, "rtpengine: "+cmdVersion("rtpengine", "--version"))
		}
		if p, tt, err := startCoturn(dir, sutCPU); err != nil {
			notes = append(notes, "coturn skipped: "+err.Error())
		} else {
			procs = append(procs, p)
			turns = append(turns, tt)
			envLns = append(envLns, "coturn: "+dpkgVersion("coturn"))
		}
	}
	// Max-rate cases send enough packets for a few CPU-seconds of work, so
	// that the servers' CPU time (counted in 10 ms ticks) compares well.
	dur, total := 3*time.Second, 100000
	if opt.Quick {
		dur, total = time.Second, 5000
	}
	var rows []suiteRow
	var cases []suiteCase
	for _, S := range []int{1, 100} {
		for _, L := range []int{160, 1200} {
			for _, m := range []bool{false, true} {
				cases = append(cases, suiteCase{kind: "gateway", streams: S, size: L, max: m})
			}
		}
	}
	for _, N := range []int{1, 10, 100} {
		for _, m := range []bool{false, true} {
			cases = append(cases, suiteCase{kind: "relay", streams: N, size: 160, max: m})
		}
	}
	for _, c := range cases {
		if ctx.Err() != nil {
			notes = append(notes, "suite interrupted: "+ctx.Err().Error())
			break
		}
		if c.kind == "gateway" {
			for _, t := range gws {
				rows = append(rows, runGatewayCase(ctx, t, c, dur, total, opt.Log))
			}
			continue
		}
		for _, t := range turns {
			rows = append(rows, runTurnCase(ctx, t, c, dur, total, opt.Log))
		}
	}
	return writeSuiteReport(dir, envLns, notes, cases, rows, sutCPU)
}

func runGatewayCase(ctx context.Context, t gwTarget, c suiteCase, dur time.Duration, total int, log io.Writer) suiteRow {
	row := suiteRow{Target: t.name, Case: c.String(), c: c}
	a, err1 := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	b, err2 := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err1 != nil || err2 != nil {
		row.Error = fmt.Sprint(err1, err2)
		return row
	}
	flows, cleanup, err := t.setup(ctx, c.streams, a.LocalAddr().(*net.UDPAddr).AddrPort(), b.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		a.Close()
		b.Close()
		row.Error = err.Error()
		fmt.Fprintf(log, "%-18s %-28s error: %v\n", t.name, c, err)
		return row
	}
	defer cleanup()
	opt := load.SRTPOptions{Target: t.name, Conns: []*net.UDPConn{a, b}, PayloadBytes: c.size, PID: t.pid, RTCP: t.rtcp,
		Drain: 300 * time.Millisecond}
	if c.max {
		// At most 40 packets in flight per stream: rtpengine treats more
		// than 50 queued on one socket as a flood and starts discarding.
		opt.Count, opt.Window = max(1, total/c.streams), min(256, 40*c.streams)
	} else {
		opt.Rate, opt.Duration = float64(50*c.streams), dur
	}
	rep, err := load.RunSRTP(ctx, flows, opt)
	if err != nil {
		row.Error = err.Error()
	}
	row.Report = rep
	fmt.Fprintf(log, "%-18s %-28s %s\n", t.name, c, rowSummary(rep, err))
	return row
}

func runTurnCase(ctx context.Context, t turnTarget, c suiteCase, dur time.Duration, total int, log io.Writer) suiteRow {
	row := suiteRow{Target: t.name, Case: c.String(), c: c}
	opt := t.opt
	opt.Allocations, opt.PayloadBytes, opt.Drain = c.streams, c.size, 300*time.Millisecond
	if c.max {
		opt.Count, opt.Window = max(1, total/c.streams), 128
	} else {
		opt.Rate, opt.Duration = float64(50*c.streams), dur
	}
	rep, err := load.RunTURN(ctx, opt)
	if err != nil {
		row.Error = err.Error()
	}
	row.Report = rep
	fmt.Fprintf(log, "%-18s %-28s %s\n", t.name, c, rowSummary(rep, err))
	return row
}

func rowSummary(rep *report.Report, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	var parts []string
	for _, d := range rep.Directions {
		parts = append(parts, fmt.Sprintf("%s %d/%d pps %.0f p99 %.0fus", d.Name, d.Received, d.Sent, d.PPS, d.Latency.P99))
	}
	return strings.Join(parts, ", ")
}

// startMediaedge runs the daemon with the gateway and the relay on
// loopback and returns the targets it offers.
func startMediaedge(ctx context.Context, dir, bin string, cpu int) (*sut.Process, *gwTarget, turnTarget, error) {
	var tt turnTarget
	port, err := freePort()
	if err != nil {
		return nil, nil, tt, err
	}
	secretPath := filepath.Join(dir, "turn-secret")
	secret := "bench-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	if err := os.WriteFile(secretPath, []byte(secret+"\n"), 0o600); err != nil {
		return nil, nil, tt, err
	}
	sock := filepath.Join(dir, "control.sock")
	cfg := fmt.Sprintf(`# written by mediaedge bench suite
log:
  level: warn
metrics:
  listen: ""
control:
  socket: %s
gateway:
  enabled: true
  max_sessions: 1000
  internal:
    bind: 127.0.0.1
    ports: 12000-13999
    recv_buffer: 4MiB
  cloud:
    bind: 127.0.0.1
    ports: 14000-15999
    recv_buffer: 4MiB
relay:
  enabled: true
  realm: bench.local
  listeners:
    - transport: udp
      addr: 127.0.0.1:%d
  relay_ip: 127.0.0.1
  ports: 18000-19999
  allowed_peers: [127.0.0.0/8]
  auth:
    secret_files: [%s]
    generate_user: ""
`, sock, port, secretPath)
	cfgPath := filepath.Join(dir, "mediaedge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, nil, tt, err
	}
	if out, err := exec.Command(bin, "config", "check", cfgPath).CombinedOutput(); err != nil {
		return nil, nil, tt, fmt.Errorf("config check: %w: %s", err, strings.TrimSpace(string(out)))
	}
	p, err := sut.StartProcess(dir, "mediaedge", cpu, bin, "run", "--config", cfgPath)
	if err != nil {
		return nil, nil, tt, err
	}
	c := control.NewClient(sock, "")
	if err := p.WaitReady(15*time.Second, func() error {
		return c.Do(ctx, "GET", "/v1/status", nil, nil)
	}); err != nil {
		return p, nil, tt, err
	}
	tt = turnTarget{name: "mediaedge relay", opt: load.TURNOptions{Target: "mediaedge relay",
		Server: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), Username: "bench", Secret: secret, PID: p.PID()}}
	var list struct {
		Sessions []sut.Session `json:"sessions"`
	}
	if err := c.Do(ctx, "GET", "/v1/sessions", nil, &list); err != nil {
		return p, nil, tt, nil
	}
	s80, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	gw := &gwTarget{name: "mediaedge gateway", pid: p.PID(), rtcp: 1,
		setup: func(ctx context.Context, S int, a, b netip.AddrPort) ([]load.Flow, func(), error) {
			gs, err := sut.SetupGateway(ctx, c, sut.GatewaySetup{Sessions: S, Suite: s80, Internal: a, Cloud: b})
			if err != nil {
				return nil, nil, err
			}
			return gs.Flows, func() { _ = gs.Close(context.Background()) }, nil
		}}
	return p, gw, tt, nil
}

// startRtpengine runs rtpengine (userspace, ng on loopback).
func startRtpengine(dir string, cpu int) (*sut.Process, gwTarget, error) {
	var gw gwTarget
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		return nil, gw, errNotInstalled
	}
	port, err := freePort()
	if err != nil {
		return nil, gw, err
	}
	ngAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	p, err := sut.StartProcess(dir, "rtpengine", cpu, bin, "--config-file=none", "--table=-1", "--foreground",
		"--log-stderr", "--log-level=5", "--interface=127.0.0.1", "--listen-ng="+ngAddr.String(),
		"--port-min=16000", "--port-max=17999", "--timeout=900", "--silent-timeout=900", "--delete-delay=0")
	if err != nil {
		return nil, gw, err
	}
	ng, err := sut.DialNG(ngAddr)
	if err != nil {
		p.Stop()
		return nil, gw, err
	}
	if err := p.WaitReady(10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := ng.Call(ctx, map[string]any{"command": "ping"})
		return err
	}); err != nil {
		p.Stop()
		return nil, gw, err
	}
	gw = gwTarget{name: "rtpengine", pid: p.PID(),
		setup: func(ctx context.Context, S int, a, b netip.AddrPort) ([]load.Flow, func(), error) {
			rc, err := sut.SetupRtpengine(ctx, ng, sut.RtpengineSetup{Calls: S, A: a, B: b})
			if err != nil {
				return nil, nil, err
			}
			return rc.Flows, func() { rc.Close(context.Background()) }, nil
		}}
	return p, gw, nil
}

// startCoturn runs coturn on loopback with a long-term user.
func startCoturn(dir string, cpu int) (*sut.Process, turnTarget, error) {
	var tt turnTarget
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		return nil, tt, errNotInstalled
	}
	port, err := freePort()
	if err != nil {
		return nil, tt, err
	}
	conf := filepath.Join(dir, "turnserver.conf")
	body := fmt.Sprintf(`listening-ip=127.0.0.1
listening-port=%d
relay-ip=127.0.0.1
min-port=20000
max-port=21999
lt-cred-mech
user=bench:benchpass
realm=bench.local
allow-loopback-peers
no-tls
no-dtls
no-cli
no-tcp-relay
no-multicast-peers
no-stdout-log
simple-log
log-file=%s
pidfile=%s
`, port, filepath.Join(dir, "coturn-server.log"), filepath.Join(dir, "coturn.pid"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, tt, err
	}
	p, err := sut.StartProcess(dir, "coturn", cpu, bin, "-c", conf)
	if err != nil {
		return nil, tt, err
	}
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	if err := p.WaitReady(10*time.Second, func() error { return stunPing(server) }); err != nil {
		p.Stop()
		return nil, tt, err
	}
	tt = turnTarget{name: "coturn", opt: load.TURNOptions{Target: "coturn", Server: server, Username: "bench", Password: "benchpass", PID: p.PID()}}
	return p, tt, nil
}

// stunPing sends a STUN binding request and waits 200 ms for any answer.
func stunPing(server netip.AddrPort) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return err
	}
	defer c.Close()
	req := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if _, err := c.Write(req); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 1500)
	_, err = c.Read(buf)
	return err
}

func suiteEnvironment() []string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, ln := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(ln, "model name") {
				_, model, _ = strings.Cut(ln, ":")
				break
			}
		}
	}
	return []string{
		"date: " + time.Now().Format(time.RFC3339),
		fmt.Sprintf("host: Linux %s, %d CPUs,%s", unix.ByteSliceToString(u.Release[:]), runtime.NumCPU(), model),
		"bench built with " + runtime.Version(),
	}
}

func cmdVersion(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func dpkgVersion(pkg string) string {
	return cmdVersion("dpkg-query", "-W", "-f", "${Version}", pkg)
}

// freePort returns a UDP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

var errNotInstalled = errors.New("not installed")
