package soak

import (
	"bufio"
	"context"
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
	"time"
)

// daemon is the mediaedge process under test, started from a generated
// configuration in the run's directory.
type daemon struct {
	cmd      *exec.Cmd
	done     chan error
	logPath  string
	socket   string
	turnAddr string
	metrics  string
	user     string
	pass     string
	realm    string
}

// freePort returns a port that is free for TCP and UDP on 127.0.0.1 now.
func freePort() (int, error) {
	for range 20 {
		tl, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
		tl.Close()
		if err == nil {
			ul.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("soak: no port free for TCP and UDP")
}

// configYAML is the daemon's configuration: relay and gateway sized for the
// run, loopback only, idle sessions kept, every refusal limit out of the
// way of one client address; with an uplink, the split-tunnel policy
// enforced on it in the soak's network namespace.
const configYAML = `log:
  level: info
metrics:
  listen: 127.0.0.1:%[3]d
control:
  socket: %[1]s/mediaedge.sock
relay:
  enabled: true
  realm: soak.local
  listeners:
    - {transport: udp, addr: "127.0.0.1:%[2]d"}
  udp_shards: 1
  relay_ip: 127.0.0.1
  ports: 20000-39999
  mark: %[9]d
  allowed_peers: [127.0.0.0/8]
  auth:
    users_file: users
  limits:
    max_allocations: %[4]d
    max_allocations_per_user: 0
    lifetime: 10m
    challenges_per_source: 0
gateway:
  enabled: true
  max_sessions: %[5]d
  idle_timeout: 0s
  internal:
    bind: 127.0.0.1
    ports: 40000-40099
    port_mode: shared
  cloud:
    bind: 127.0.0.1
    ports: 45000-45099
    port_mode: shared
    mark: %[9]d
policy:
  enabled: %[6]t
  mode: enforce
  mark: %[9]d
  uplink:
    interface: "%[7]s"
    gateway4: "%[8]s"
  families: [ipv4]
`

// startDaemon writes the configuration and starts bin under it.
func startDaemon(bin, dir string, o Options) (*daemon, error) {
	turnPort, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &daemon{
		logPath:  filepath.Join(dir, "daemon.log"),
		socket:   filepath.Join(dir, "mediaedge.sock"),
		turnAddr: fmt.Sprintf("127.0.0.1:%d", turnPort),
		metrics:  fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort),
		user:     "soak",
		pass:     "soak-password-0123456789",
		realm:    "soak.local",
		done:     make(chan error, 1),
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(d.user+":"+d.pass+"\n"), 0o600); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "mediaedge.yaml")
	gw4, mark := "", 0
	if o.Uplink != "" {
		// The policy enforces its rules in the soak's own namespace; the
		// marks of the media sockets must then be the policy's.
		gw4, mark = UplinkGateway, 0x4d45
	}
	body := fmt.Sprintf(configYAML, dir, turnPort, metricsPort, 2*o.Allocations+1000, 2*o.Sessions+1000,
		o.Uplink != "", o.Uplink, gw4, mark)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(bin, "run", "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("soak: starting %s: %w", bin, err)
	}
	go func() {
		d.done <- d.cmd.Wait()
		logf.Close()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := scrape(d.metrics); err == nil {
			return d, nil
		}
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("soak: daemon exited at start-up: %w (see %s)", err, d.logPath)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("soak: daemon not up after 30s (see %s)", d.logPath)
		}
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// reload sends SIGHUP.
func (d *daemon) reload() error { return d.cmd.Process.Signal(syscall.SIGHUP) }

// stop sends SIGTERM and waits up to 20 s, then kills.
func (d *daemon) stop() error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		return err
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("soak: daemon did not stop within 20s of SIGTERM")
	}
}

// logLines returns the lines of the daemon's log that contain any of
// needles.
func (d *daemon) logLines(needles ...string) ([]string, error) {
	f, err := os.Open(d.logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		for _, n := range needles {
			if strings.Contains(sc.Text(), n) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out, sc.Err()
}

// counters returns the non-zero samples of the daemon's drop and refusal
// counters, as exposition lines, for the report.
func (d *daemon) counters() []string {
	b, err := fetch(d.metrics)
	if err != nil {
		return []string{"scraping: " + err.Error()}
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		name, _, _ := strings.Cut(line, "{")
		if line == "" || line[0] == '#' || strings.HasSuffix(line, " 0") ||
			!(strings.Contains(name, "drop") || strings.Contains(name, "refused") || strings.Contains(name, "failures") || strings.Contains(name, "errors")) {
			continue
		}
		out = append(out, line)
	}
	return out
}

func fetch(url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// scrape fetches a Prometheus text exposition and returns its unlabelled
// samples and the sums of labelled ones by metric name.
func scrape(url string) (map[string]float64, error) {
	b, err := fetch(url)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, nil
}

// Sample is one reading of the daemon's resources.
type Sample struct {
	// T is the time since the start of the run in seconds.
	T         float64
	RSSKiB    int64
	HeapBytes float64
	// HeapGoal is the heap size that triggers the next collection: the
	// live heap after the last one times 1 + GOGC/100, free of the
	// sawtooth HeapBytes draws between collections.
	HeapGoal   float64
	Goroutines float64
	FDs        int
	// Allocations and Sessions are what the soak holds at the time.
	Allocations int
	Sessions    int
}

// sample reads /proc and the metrics of the daemon.
func (d *daemon) sample(t0 time.Time) (Sample, error) {
	s := Sample{T: time.Since(t0).Seconds()}
	rss, err := readRSS(d.pid())
	if err != nil {
		return s, err
	}
	s.RSSKiB = rss
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(d.pid()) + "/fd")
	if err != nil {
		return s, fmt.Errorf("soak: counting descriptors: %w", err)
	}
	s.FDs = len(fds)
	m, err := scrape(d.metrics)
	if err != nil {
		return s, fmt.Errorf("soak: scraping metrics: %w", err)
	}
	s.HeapBytes = m["go_memstats_heap_inuse_bytes"]
	s.HeapGoal = m["go_memstats_next_gc_bytes"]
	s.Goroutines = m["go_goroutines"]
	return s, nil
}

// readRSS returns VmRSS of pid from /proc/PID/status, in KiB.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("soak: reading memory of pid %d: %w", pid, err)
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(ln, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("soak: no VmRSS for pid %d", pid)
}
