package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mediaedge/mediaedge/internal/steer"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestKilledDaemonLeavesNoSteering runs the real daemon with
// gateway.steering: on in a network namespace of its own, SIGKILLs it and
// starts it again: while a daemon runs, `bpftool link show` lists exactly
// one sk_lookup link in the namespace, after the kill none (and `bpftool
// prog show` no longer lists its program), after the restart one again, a
// new one, and after SIGTERM none.
func TestKilledDaemonLeavesNoSteering(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon; skipped in -short")
	}
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("bpftool not installed (apt-get install bpftool)")
	}
	inProcessNetns(t, func(netlink.Link) {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
			t.Fatal(err)
		}
		ino := st.Ino
		probe, err := steer.New()
		if errors.Is(err, steer.ErrUnsupported) {
			t.Skipf("steering cannot run here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		probe.Close()
		bin := testutil.BuildMediaedge(t)
		dir := t.TempDir()
		cfg := filepath.Join(dir, "mediaedge.yaml")
		conf := fmt.Sprintf(`log: {level: info, format: text}
metrics: {listen: ""}
control: {socket: %q}
relay: {enabled: false}
policy: {enabled: false}
gateway:
  enabled: true
  workers: 2
  steering: "on"
  internal: {port_mode: dedicated}
  cloud: {port_mode: dedicated}
  ng: {listen: ""}
`, filepath.Join(dir, "control.sock"))
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		// links returns the programs of the sk_lookup links in this
		// namespace.
		links := func() []uint32 {
			out, err := exec.Command("bpftool", "-j", "link", "show").Output()
			if err != nil {
				t.Fatalf("bpftool link show: %v", err)
			}
			var ls []struct {
				ProgID     uint32 `json:"prog_id"`
				AttachType string `json:"attach_type"`
				NetnsIno   uint64 `json:"netns_ino"`
			}
			if err := json.Unmarshal(out, &ls); err != nil {
				t.Fatalf("bpftool link show: %v\n%s", err, out)
			}
			var ids []uint32
			for _, l := range ls {
				if l.AttachType == "sk_lookup" && l.NetnsIno == ino {
					ids = append(ids, l.ProgID)
				}
			}
			return ids
		}
		start := func() (*exec.Cmd, uint32) {
			cmd := exec.Command(bin, "run", "--config", cfg)
			var log testutil.SyncBuffer
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			testutil.WaitFor(t, "the gateway started with steering", 30*time.Second, func() bool {
				return strings.Contains(log.String(), "steering=true")
			})
			ids := links()
			if len(ids) != 1 {
				t.Fatalf("%d sk_lookup links while one daemon runs (%v), want 1\n%s", len(ids), ids, log.String())
			}
			return cmd, ids[0]
		}
		first, firstID := start()
		if err := first.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = first.Wait()
		testutil.WaitFor(t, "no link and no program after SIGKILL", 5*time.Second, func() bool {
			return len(links()) == 0 && !bpftoolLists(t, "prog", firstID)
		})
		second, secondID := start()
		if secondID == firstID {
			t.Fatalf("after the restart the link runs program %d, the killed daemon's", firstID)
		}
		if err := second.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := second.Wait(); err != nil {
			t.Errorf("the daemon did not stop cleanly on SIGTERM: %v", err)
		}
		if ids := links(); len(ids) != 0 || bpftoolLists(t, "prog", secondID) {
			t.Errorf("links %v (or program %d) left after a clean stop", ids, secondID)
		}
	})
}
