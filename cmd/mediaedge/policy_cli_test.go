package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPolicyCLIInNamespace runs the policy commands as an admin would, in
// a network namespace of their own with a veth uplink:
//   - apply exits non-zero, saying why, when no family has a usable
//     uplink (nothing would go direct);
//   - status without a daemon reports an enforce configuration as
//     enforce (not "plan") once its rules are installed;
//   - a refused apply prints its error once.
func TestPolicyCLIInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	for _, tool := range []string{"unshare", "ip", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // nobody reads the configuration
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := copyExecutable(t, os.Args[0])
	conf := func(name, uplink string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, "relay: {enabled: false}\ngateway: {enabled: false}\npolicy:\n  mode: enforce\n  families: [ipv4]\n  uplink: "+uplink+"\n", 0o644)
		return p
	}
	bare := conf("bare.yaml", "{interface: wan0}")
	good := conf("good.yaml", "{interface: wan0, gateway4: 198.51.100.1}")
	other := filepath.Join(dir, "other.yaml")
	writeFile(t, other, "relay: {enabled: false}\ngateway: {enabled: false}\npolicy:\n  mode: enforce\n  families: [ipv4]\n  uplink: {interface: wan0, gateway4: 198.51.100.1}\n  tables: {media: 200, direct: 201}\n", 0o644)
	me := `MEDIAEDGE_TEST_EXEC=1 ` + bin
	script := `
ip link set lo up
ip link add wan0 type veth peer name wan0p && ip link set wan0 up && ip link set wan0p up || exit 90
echo "=== apply-bare"; ` + me + ` policy apply --config ` + bare + ` 2>&1; echo "=== rc=$?"
ip addr add 198.51.100.2/24 dev wan0
echo "=== apply-good"; ` + me + ` policy apply --config ` + good + ` 2>&1; echo "=== rc=$?"
echo "=== status"; ` + me + ` --control ` + dir + `/absent.sock policy status --config ` + good + ` 2>&1; echo "=== rc=$?"
echo "=== apply-nobody"; MEDIAEDGE_TEST_EXEC=1 setpriv --reuid=65534 --regid=65534 --clear-groups ` + bin + ` policy apply --config ` + other + ` 2>&1; echo "=== rc=$?"
`
	out, err := exec.Command("unshare", "--net", "--", "/bin/sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	steps := map[string]string{}
	rcs := map[string]string{}
	re := regexp.MustCompile(`(?s)=== (\S+)\n(.*?)=== rc=(\d+)\n`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		steps[m[1]], rcs[m[1]] = m[2], m[3]
	}
	t.Logf("%s", out)

	if rcs["apply-bare"] == "0" || !strings.Contains(steps["apply-bare"], "nothing would go direct") {
		t.Errorf("apply without a usable uplink: exit %s, want non-zero with the reason:\n%s", rcs["apply-bare"], steps["apply-bare"])
	}
	if rcs["apply-good"] != "0" {
		t.Fatalf("apply with a gateway: exit %s:\n%s", rcs["apply-good"], steps["apply-good"])
	}
	if !strings.Contains(steps["status"], "mode enforce") || strings.Contains(steps["status"], "MISSING") {
		t.Errorf("status without a daemon, rules installed:\n%s", steps["status"])
	}
	if rcs["apply-nobody"] == "0" {
		t.Fatalf("apply as nobody succeeded:\n%s", steps["apply-nobody"])
	}
	if n := strings.Count(steps["apply-nobody"], "operation not permitted"); n != 1 {
		t.Errorf("a refused apply prints its error %d times, want once:\n%s", n, steps["apply-nobody"])
	}
}
