package sut

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Process is a system under test that the suite started (mediaedge,
// coturn, rtpengine). Stop ends it; the suite stops every process it
// started, and only those, by PID.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

// StartProcess starts argv with its output in dir/name.log. When cpu is
// not negative and the machine has more than one CPU, the process is
// pinned to that CPU with taskset(1) so that its figures are "one core".
func StartProcess(dir, name string, cpu int, argv ...string) (*Process, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	if cpu >= 0 {
		if ts, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{ts, "-c", strconv.Itoa(cpu)}, argv...)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C on the terminal reaches bench,
	// which then stops the process in order, instead of both at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("sut: starting %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, log: logf, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// PID is the process's PID (taskset execs the program in place).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, with its error.
func (p *Process) Exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, then SIGKILL after five seconds, and waits.
// Idempotent.
func (p *Process) Stop() {
	if ok, _ := p.Exited(); !ok {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
		case err := <-p.done:
			p.done <- err
		}
	}
	<-p.done
	p.done <- nil
	p.log.Close()
}

// waitUDP waits until something answers probe, the process ends or the
// timeout passes.
func (p *Process) WaitReady(timeout time.Duration, probe func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if ok, perr := p.Exited(); ok {
			return fmt.Errorf("sut: %s exited during start-up: %w (see %s)", p.Name, perr, p.log.Name())
		}
		if err = probe(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("sut: %s not ready after %v: %w (see %s)", p.Name, timeout, err, p.log.Name())
}
