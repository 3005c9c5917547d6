package steer

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const noCapsChildEnv = "MEDIAEDGE_STEER_NOCAPS_CHILD"

// TestNewWithoutCapabilities runs New in a copy of this test binary
// whose capability bounding set lacks CAP_BPF, CAP_SYS_ADMIN,
// CAP_PERFMON and CAP_NET_ADMIN (setpriv): the error wraps
// ErrUnsupported and names the capabilities.
func TestNewWithoutCapabilities(t *testing.T) {
	if os.Getenv(noCapsChildEnv) == "1" {
		s, err := New()
		if err == nil {
			s.Close()
			t.Fatal("New succeeded without CAP_BPF and CAP_NET_ADMIN")
		}
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "CAP_BPF") {
			t.Fatalf("New = %v, want ErrUnsupported naming CAP_BPF", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("steer: needs root to drop capabilities from")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("steer: setpriv not installed (apt-get install util-linux)")
	}
	cmd := exec.Command("setpriv", "--bounding-set=-bpf,-sys_admin,-perfmon,-net_admin", "--inh-caps=-all",
		os.Args[0], "-test.run=^TestNewWithoutCapabilities$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), noCapsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
