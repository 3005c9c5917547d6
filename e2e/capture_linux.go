package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Capture is a tcpdump writing the traffic of one interface of a namespace
// that matches a BPF filter to a pcap file. StartCapture returns once tcpdump listens; Stop
// ends it (SIGINT, so that it flushes) and waits.
type Capture struct {
	Path   string
	Iface  string
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *strings.Builder
}

// captureStartTimeout bounds the wait for tcpdump's "listening on" line.
const captureStartTimeout = 10 * time.Second

// StartCapture captures what matches filter (tcpdump syntax, e.g. "udp
// port 45000") on iface inside ns into path.
func StartCapture(ctx context.Context, ns *Netns, iface, filter, path string) (*Capture, error) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		return nil, fmt.Errorf("%w: tcpdump (apt-get install tcpdump)", ErrMissingTool)
	}
	// -U: write each packet as it arrives; -n: no name lookups; -Z root:
	// keep the privileges to write into the run's directory.
	c := &Capture{Path: path, Iface: iface, done: make(chan struct{}), stderr: &strings.Builder{}}
	c.cmd = exec.Command("ip", "netns", "exec", ns.Name, "tcpdump", "-i", iface, "-n", "-U", "-Z", "root", "-w", path, filter)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("e2e: starting tcpdump: %w", err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			c.stderr.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "listening on") {
				close(listening)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		_ = c.cmd.Wait()
		close(c.done)
	}()
	select {
	case <-listening:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("e2e: tcpdump on %s exited: %s", iface, strings.TrimSpace(c.stderr.String()))
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	case <-time.After(captureStartTimeout):
		c.kill()
		return nil, fmt.Errorf("e2e: tcpdump on %s not listening after %s", iface, captureStartTimeout)
	}
}

// Stop ends the capture and waits for the file to be complete. It is safe
// to call more than once.
func (c *Capture) Stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
		return nil
	case <-time.After(5 * time.Second):
		c.kill()
		return errors.New("e2e: tcpdump did not stop on SIGINT; killed")
	}
}

func (c *Capture) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}
