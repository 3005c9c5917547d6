package fastpath

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

const killChildEnv = "MEDIAEDGE_FASTPATH_KILL_CHILD"

// TestKilledOwnerLeavesNothing attaches the program from a child process
// inside this test's namespace, SIGKILLs the child, and checks that lo
// ingress then holds no program, and exactly one after a new Attach: the
// tcx link dies with its owner, so a restart never finds a stale set.
func TestKilledOwnerLeavesNothing(t *testing.T) {
	if os.Getenv(killChildEnv) == "1" {
		killChild(t)
		return
	}
	inFreshNetns(t, func() {
		lo, _ := netlink.LinkByName("lo")
		ns, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		nsFile := os.NewFile(uintptr(ns), "netns") // owns the handle now
		defer nsFile.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledOwnerLeavesNothing$", "-test.count=1")
		cmd.Env = append(os.Environ(), killChildEnv+"=1")
		cmd.ExtraFiles = []*os.File{nsFile} // fd 3 in the child
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "attached") {
					ready <- true
					break
				}
			}
			_, _ = io.Copy(io.Discard, out)
			close(ready)
		}()
		select {
		case ok := <-ready:
			if !ok {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatal("child ended without attaching")
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatal("child did not attach within 10s")
		}
		if n := ingressPrograms(t, lo.Attrs().Index); n != 1 {
			t.Fatalf("%d programs at lo ingress while the child runs, want 1", n)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		deadline := time.Now().Add(5 * time.Second)
		for ingressPrograms(t, lo.Attrs().Index) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the killed child's program is still attached after 5s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		f, err := New()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Attach(lo.Attrs().Index); err != nil {
			t.Fatal(err)
		}
		if err := f.Attach(lo.Attrs().Index); err != nil {
			t.Fatal(err)
		}
		if n := ingressPrograms(t, lo.Attrs().Index); n != 1 {
			t.Fatalf("%d programs at lo ingress after restart, want exactly 1", n)
		}
	})
}

// killChild joins the parent's namespace (fd 3), attaches and waits to be
// killed.
func killChild(t *testing.T) {
	runtime.LockOSThread()
	if err := netns.Set(netns.NsHandle(3)); err != nil {
		t.Fatalf("setns: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	f, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Attach(lo.Attrs().Index); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("attached\n")
	time.Sleep(30 * time.Second) // the parent kills us long before
	t.Fatal("not killed")
}

func ingressPrograms(t *testing.T, ifindex int) int {
	t.Helper()
	r, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		t.Fatalf("query lo ingress: %v", err)
	}
	return len(r.Programs)
}

// TestKilledDaemonLeavesNothing runs the real mediaedge binary with
// fast_path: on in a namespace of its own, SIGKILLs it and starts it again:
// while a daemon runs, loopback's ingress holds exactly one turnfwd
// program, after the kill none, and after the restart exactly one again,
// a new one. Three views are counted together: the kernel's tcx list
// (BPF_PROG_QUERY), `bpftool net show` and `tc filter show` (bpftool
// before 7.3 does not list tcx links; both list a clsact filter, which a
// kernel without tcx would get).
func TestKilledDaemonLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("fastpath: builds the daemon; skipped in -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("fastpath: kernel test needs root (netns, CAP_BPF)")
	}
	for _, tool := range []string{"nsenter", "bpftool", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("fastpath: %s not installed (apt-get install util-linux bpftool iproute2)", tool)
		}
	}
	bin := testutil.BuildMediaedge(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mediaedge.yaml")
	conf := fmt.Sprintf(`log: {level: info, format: text}
control: {socket: %q}
relay:
  enabled: true
  realm: test
  listeners: [{transport: udp, addr: "127.0.0.1:3478"}]
  relay_ip: 127.0.0.1
  fast_path: "on"
  auth: {generate_user: demo}
gateway: {enabled: false}
policy: {enabled: false}
`, filepath.Join(dir, "control.sock"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	inFreshNetns(t, func() {
		lo, _ := netlink.LinkByName("lo")
		ns, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		// nsenter joins the namespace and execs the command: the process
		// we signal is the daemon (or the tool) itself.
		inNS := func(name string, args ...string) *exec.Cmd {
			dup, err := unix.Dup(int(ns))
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(dup), "netns")
			cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", name}, args...)...)
			cmd.ExtraFiles = []*os.File{f}
			t.Cleanup(func() { f.Close() })
			return cmd
		}
		// views lists the turnfwd programs on lo ingress as each of the
		// three sees them: tcx query, bpftool, tc.
		views := func() [3]map[uint32]bool {
			v := [3]map[uint32]bool{{}, {}, {}}
			ids := v[0]
			r, err := link.QueryPrograms(link.QueryOptions{Target: lo.Attrs().Index, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				t.Fatalf("query lo ingress: %v", err)
			}
			for _, p := range r.Programs {
				ids[uint32(p.ID)] = true
			}
			out, err := inNS("bpftool", "-j", "net", "show", "dev", "lo").Output()
			if err != nil {
				t.Fatalf("bpftool net show: %v", err)
			}
			var nets []struct {
				TC []struct {
					Name string `json:"name"`
					ID   uint32 `json:"prog_id"`
				} `json:"tc"`
			}
			if err := json.Unmarshal(out, &nets); err != nil {
				t.Fatalf("bpftool net show: %v\n%s", err, out)
			}
			for _, n := range nets {
				for _, p := range n.TC {
					if strings.Contains(p.Name, "turnfwd") {
						v[1][p.ID] = true
					}
				}
			}
			out, err = inNS("tc", "filter", "show", "dev", "lo", "ingress").CombinedOutput()
			if err != nil && !strings.Contains(string(out), "Cannot find") {
				t.Fatalf("tc filter show: %v\n%s", err, out)
			}
			for _, m := range regexp.MustCompile(`turnfwd\S* .*?id (\d+)`).FindAllStringSubmatch(string(out), -1) {
				id, _ := strconv.ParseUint(m[1], 10, 32)
				v[2][uint32(id)] = true
			}
			return v
		}
		programs := func() map[uint32]bool {
			ids := map[uint32]bool{}
			for _, m := range views() {
				for id := range m {
					ids[id] = true
				}
			}
			return ids
		}
		start := func() (*exec.Cmd, uint32) {
			cmd := inNS(bin, "run", "--config", cfg)
			var log testutil.SyncBuffer
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			testutil.WaitFor(t, "the daemon's fast path attached", 30*time.Second, func() bool {
				return strings.Contains(log.String(), "in-kernel fast path attached")
			})
			ids := programs()
			if len(ids) != 1 {
				t.Fatalf("%d programs on lo ingress while one daemon runs (%v), want exactly 1\n%s", len(ids), ids, log.String())
			}
			for id := range ids {
				return cmd, id
			}
			return cmd, 0
		}
		first, firstID := start()
		if err := first.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = first.Wait()
		testutil.WaitFor(t, "no program after SIGKILL", 5*time.Second, func() bool { return len(programs()) == 0 })
		second, secondID := start()
		if secondID == firstID {
			t.Fatalf("after the restart lo ingress runs program %d, the killed daemon's", firstID)
		}
		if err := second.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := second.Wait(); err != nil {
			t.Errorf("the daemon did not stop cleanly on SIGTERM: %v", err)
		}
		if ids := programs(); len(ids) != 0 {
			t.Errorf("programs left on lo ingress after a clean stop: %v", ids)
		}
		// The bpftool and tc views must see a program when there is one
		// they can list: a clsact filter, as a kernel without tcx gets.
		f, err := New()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.attachTCX = refuseTCX
		if err := f.Attach(lo.Attrs().Index); err != nil {
			t.Fatal(err)
		}
		if v := views(); len(v[0]) != 0 || len(v[1]) != 1 || len(v[2]) != 1 {
			t.Errorf("a clsact filter seen as %v (tcx, bpftool, tc), want only bpftool and tc to list it", v)
		}
	})
}
