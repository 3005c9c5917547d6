package fastpath

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
