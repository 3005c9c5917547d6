package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scenarioTimeout bounds the whole scenario (the budget is 2 minutes,
// binary build included).
const scenarioTimeout = 100 * time.Second

// TestEndToEnd runs the whole scenario against the real binary built from
// this tree. Each claim is a subtest, with its evidence in the log.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end scenario skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end scenario needs root to build network namespaces (make test runs as root in CI)")
	}
	if err := preflight(); err != nil {
		t.Skipf("end-to-end scenario cannot run here: %v", err)
	}
	bin := testutil.BuildMediaedge(t)
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	res, err := Run(ctx, Options{Prefix: "mee2e", Bin: bin, EdgeSysctl: "../systemd/mediaedge.sysctl", Progress: testutil.LogWriter(t)})
	if errors.Is(err, ErrNotRoot) || errors.Is(err, ErrMissingTool) {
		t.Skipf("end-to-end scenario cannot run here: %v", err)
	}
	for _, c := range res.Checks {
		t.Run(strings.ReplaceAll(c.Name, " ", "_"), func(t *testing.T) {
			var b strings.Builder
			WriteCheck(&b, c)
			if !c.Pass {
				t.Error(b.String())
				return
			}
			t.Log(b.String())
		})
	}
	if err != nil || !res.Passed() {
		t.Errorf("scenario: %v; %d checks; daemon log tail:\n%s", err, len(res.Checks), res.DaemonLog)
	}
	if !res.Complete || len(res.Checks) != 13 {
		t.Errorf("the scenario did not run to the end: %d of 13 checks", len(res.Checks))
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "mee2e-") {
		for _, l := range strings.Split(string(out), "\n") {
			if pid, _, ok := parseNSName("mee2e", strings.Fields(l + " x")[0]); ok && pid == os.Getpid() {
				t.Errorf("namespace left behind: %s", l)
			}
		}
	}
}

// TestCleanLeftovers makes a namespace named like one of a run whose
// process is gone, and one of this (live) process, and checks that only the
// first is removed.
func TestCleanLeftovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (apt-get install iproute2)")
	}
	// A PID that is certainly gone: a child that has exited and been
	// reaped.
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := c.Process.Pid
	prefix := "mee2eclean"
	ctx := context.Background()
	deadNS := nsName(prefix, dead, "edge")
	liveNS := nsName(prefix, os.Getpid(), "edge")
	for _, n := range []string{deadNS, liveNS} {
		if _, err := run(ctx, "ip", "netns", "add", n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = run(context.Background(), "ip", "netns", "del", n) })
	}
	removed, err := CleanLeftovers(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != deadNS {
		t.Errorf("removed %v, want only %s", removed, deadNS)
	}
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, deadNS) || !strings.Contains(out, liveNS) {
		t.Errorf("after CleanLeftovers, ip netns list:\n%s", out)
	}
}
