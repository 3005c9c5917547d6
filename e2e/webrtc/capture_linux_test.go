package webrtc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/capture"
)

// loCapture is tcpdump on lo for one UDP port, started by the test; stop
// returns what it captured. Nil when the machine cannot capture (not
// root, no tcpdump): the checks that need it say so and skip.
type loCapture struct {
	t    *testing.T
	cmd  *exec.Cmd
	file string
	errs *lockedBuffer
	done chan struct{}
}

// captureLo starts tcpdump on lo for the UDP ports and waits until it
// listens.
func captureLo(t *testing.T, ports ...uint16) *loCapture {
	t.Helper()
	bin, err := exec.LookPath("tcpdump")
	if err != nil || os.Geteuid() != 0 {
		t.Log("not capturing the legs: needs root and tcpdump (Debian package tcpdump)")
		return nil
	}
	var filter []string
	for _, p := range ports {
		filter = append(filter, "udp port "+strconv.Itoa(int(p)))
	}
	c := &loCapture{t: t, file: filepath.Join(t.TempDir(), "legs.pcap"), errs: &lockedBuffer{}, done: make(chan struct{})}
	// --immediate-mode: with TPACKET_V3 blocks a SIGINT would drop the
	// packets of the last, unfilled block. -s 0: whole packets, for the
	// gateway's UDP GSO messages cross lo unsegmented, up to 64 KiB.
	c.cmd = exec.Command(bin, "-i", "lo", "-n", "-U", "--immediate-mode", "-B", "16384", "-s", "0",
		"-w", c.file, strings.Join(filter, " or "))
	c.cmd.Stderr = c.errs
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting tcpdump: %v", err)
	}
	go func() {
		defer close(c.done)
		c.cmd.Wait()
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.errs.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start listening within 10 s: %s", c.errs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

// stop ends the capture and returns its datagrams.
func (c *loCapture) stop() []capture.Datagram {
	c.t.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("tcpdump did not stop within 10 s of SIGINT")
	}
	dgs, _, err := capture.ReadCaptureFile(c.file)
	if err != nil {
		c.t.Fatalf("reading the capture: %v (tcpdump: %s)", err, c.errs.String())
	}
	return dgs
}
