package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mediaedge/mediaedge/internal/control"
)

// Bounds of the daemon's life cycle in the scenario.
const (
	edgeReadyTimeout = 20 * time.Second
	edgeStopTimeout  = 15 * time.Second
)

// Edge is the real `mediaedge run` process inside the edge namespace. It is
// started by StartEdge; Stop (SIGTERM) or Kill ends it, and Kill is safe to
// call at any time, any number of times.
type Edge struct {
	// set in StartEdge, never changed
	ns         *Netns
	Bin        string
	Dir        string
	ConfigPath string
	LogPath    string
	// TURNUser and TURNPassword are the relay's static user.
	TURNUser, TURNPassword string
	// Control talks to the daemon's control API over its unix socket
	// (a file path: reachable from any namespace).
	Control *control.Client
	cfg     EdgeConfig
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed when the process has exited

	mu      sync.Mutex
	waitErr error
}

// StartEdge writes the configuration into dir and starts bin with it inside
// ns, then waits until the daemon reports every component running.
func StartEdge(ctx context.Context, ns *Netns, bin, dir string) (*Edge, error) {
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return nil, fmt.Errorf("e2e: generating the TURN password: %w", err)
	}
	e := &Edge{
		ns:           ns,
		Bin:          bin,
		Dir:          dir,
		ConfigPath:   filepath.Join(dir, "mediaedge.yaml"),
		LogPath:      filepath.Join(dir, "mediaedge.log"),
		TURNUser:     "e2e",
		TURNPassword: hex.EncodeToString(pw),
		done:         make(chan struct{}),
	}
	e.cfg = EdgeConfig{ControlSocket: filepath.Join(dir, "control.sock"), UsersFile: "turn-users"}
	if err := os.WriteFile(filepath.Join(dir, e.cfg.UsersFile), []byte(e.TURNUser+":"+e.TURNPassword+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("e2e: writing the TURN users file: %w", err)
	}
	if err := e.WriteConfig(e.cfg); err != nil {
		return nil, err
	}
	if out, err := ns.Exec(ctx, bin, "config", "check", e.ConfigPath); err != nil {
		return nil, fmt.Errorf("e2e: the scenario's configuration does not pass `mediaedge config check`: %w\n%s", err, out)
	}
	lf, err := os.OpenFile(e.LogPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("e2e: opening the daemon log: %w", err)
	}
	e.logFile = lf
	// `ip netns exec` enters the namespace and execs the program: the
	// process we hold is mediaedge itself and gets our signals.
	e.cmd = exec.Command("ip", "netns", "exec", ns.Name, bin, "run", "--config", e.ConfigPath, "--drain", "5s")
	e.cmd.Stdout = lf
	e.cmd.Stderr = lf
	// If this process dies without cleaning up, the daemon is told to
	// stop (and remove its rules); the namespaces go with the next run.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := e.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("e2e: starting %s: %w", bin, err)
	}
	go func() {
		err := e.cmd.Wait()
		e.mu.Lock()
		e.waitErr = err
		e.mu.Unlock()
		lf.Close()
		close(e.done)
	}()
	e.Control = control.NewClient(e.cfg.ControlSocket, "")
	if err := e.waitReady(ctx); err != nil {
		e.Kill()
		return nil, err
	}
	return e, nil
}

// WriteConfig replaces the configuration file (atomically: a reload never
// sees half a file).
func (e *Edge) WriteConfig(c EdgeConfig) error {
	c.ControlSocket, c.UsersFile = e.cfg.ControlSocket, e.cfg.UsersFile
	tmp := e.ConfigPath + ".new"
	if err := os.WriteFile(tmp, []byte(c.Render()), 0o600); err != nil {
		return fmt.Errorf("e2e: writing the configuration: %w", err)
	}
	if err := os.Rename(tmp, e.ConfigPath); err != nil {
		return fmt.Errorf("e2e: writing the configuration: %w", err)
	}
	e.cfg = c
	return nil
}

// DaemonStatus is the part of GET /v1/status the scenario reads.
type DaemonStatus struct {
	ConfigFile  string                     `json:"config_file"`
	LastReload  *time.Time                 `json:"last_reload"`
	ReloadError string                     `json:"reload_error"`
	Components  map[string]ComponentStatus `json:"components"`
}

// ComponentStatus is a component's state in GET /v1/status.
type ComponentStatus struct {
	State  string `json:"state"`
	Detail string `json:"detail"`
}

// Status reads GET /v1/status.
func (e *Edge) Status(ctx context.Context) (DaemonStatus, error) {
	var st DaemonStatus
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := e.Control.Do(ctx, "GET", "/v1/status", nil, &st)
	return st, err
}

func (e *Edge) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(edgeReadyTimeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return fmt.Errorf("e2e: mediaedge exited during start-up (%w); log:\n%s", e.exitErr(), e.LogTail(30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		st, err := e.Status(ctx)
		if err != nil {
			last = err.Error()
			continue
		}
		ready := true
		var states []string
		for _, name := range []string{"policy", "gateway", "relay"} {
			cs := st.Components[name]
			states = append(states, name+"="+cs.State)
			if cs.State != "running" {
				ready = false
			}
		}
		last = strings.Join(states, " ")
		if ready {
			return nil
		}
	}
	return fmt.Errorf("e2e: mediaedge not ready after %s (%s); log:\n%s", edgeReadyTimeout, last, e.LogTail(30))
}

// Signal sends sig to the daemon.
func (e *Edge) Signal(sig syscall.Signal) error {
	select {
	case <-e.done:
		return errors.New("e2e: mediaedge is not running")
	default:
	}
	return e.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits for the exit, at most edgeStopTimeout. It
// returns the exit error (nil for status 0) and how long the stop took.
func (e *Edge) Stop() (time.Duration, error) {
	t0 := time.Now()
	if err := e.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-e.done:
		return time.Since(t0), e.exitErr()
	case <-time.After(edgeStopTimeout):
		e.Kill()
		return time.Since(t0), fmt.Errorf("e2e: mediaedge still running %s after SIGTERM; killed", edgeStopTimeout)
	}
}

// Kill ends the process with SIGKILL if it still runs and waits for it.
func (e *Edge) Kill() {
	if e == nil || e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	_ = e.cmd.Process.Kill()
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
	}
}

// Running reports whether the process has not exited.
func (e *Edge) Running() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

func (e *Edge) exitErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.waitErr
}

// Log returns the daemon's output so far.
func (e *Edge) Log() string {
	b, _ := os.ReadFile(e.LogPath)
	return string(b)
}

// LogTail returns the last n lines of the daemon's output.
func (e *Edge) LogTail(n int) string {
	b := bytes.TrimRight([]byte(e.Log()), "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
