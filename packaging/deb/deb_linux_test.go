// Package deb_test builds the Debian package and installs it into a
// throwaway copy of this machine's root file system.
package deb_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// installScript runs in a private mount namespace: it overlays a tmpfs on
// the real root (every change is thrown away with the namespace), installs
// the package there with dpkg -i, prints what the test checks, and purges
// it. systemd is not PID 1 in the chroot, as in a container or image build.
const installScript = `set -eu
deb="$1"; scratch="$2"
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/up" "$scratch/work" "$scratch/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$scratch/up,workdir=$scratch/work" "$scratch/root"
mount --rbind /proc "$scratch/root/proc"
mount --rbind /dev "$scratch/root/dev"
mount -t tmpfs tmpfs "$scratch/root/run"
cp "$deb" "$scratch/root/tmp/mediaedge.deb"
chroot "$scratch/root" /bin/sh -eu -c '
	dpkg -i /tmp/mediaedge.deb
	echo "user: $(getent passwd mediaedge | cut -d: -f1,6,7)"
	echo "config: $(stat -c "%U:%G %a" /etc/mediaedge/mediaedge.yaml)"
	echo "confdir: $(stat -c "%U:%G %a" /etc/mediaedge)"
	echo "state: $(stat -c "%U:%G %a" /var/lib/mediaedge)"
	echo "conffiles: $(dpkg-query -W -f="\${Conffiles}" mediaedge | awk "{print \$1}")"
	echo "man: $(ls /usr/share/man/man1/ | grep -c "^mediaedge")"
	test -s /usr/share/bash-completion/completions/mediaedge && echo "bash completion: ok"
	test -s /usr/share/zsh/vendor-completions/_mediaedge && echo "zsh completion: ok"
	echo "unit: $(grep ^ExecStart= /lib/systemd/system/mediaedge.service)"
	echo "check as mediaedge: $(runuser -u mediaedge -- mediaedge config check --skip-secrets /etc/mediaedge/mediaedge.yaml 2>&1)"
	dpkg --purge mediaedge
	echo "after purge: $(dpkg-query -W -f="\${db:Status-Status}" mediaedge 2>/dev/null || echo gone) $(ls /usr/bin/mediaedge /etc/mediaedge 2>&1 | tr "\n" " ")"
'
`

func TestDebInstallsCleanly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs the package into an overlay of the root file system")
	}
	for _, tool := range []string{"dpkg-deb", "dpkg", "unshare", "chroot", "runuser", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	bin := filepath.Join(dir, "mediaedge")
	run("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/mediaedge")
	deb := strings.TrimSpace(run("./packaging/deb/build.sh", bin, "v0.0.1-test", filepath.Join(dir, "out")))
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("build.sh printed %q, want the package path", deb)
	}
	scratch := filepath.Join(dir, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	out := run("unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", installScript, "sh", deb, scratch)
	t.Logf("install log:\n%s", out)
	for _, want := range []string{
		"user: mediaedge:/var/lib/mediaedge:/usr/sbin/nologin",
		"config: root:mediaedge 640",
		"confdir: root:mediaedge 750",
		"state: mediaedge:mediaedge 750",
		"conffiles: /etc/mediaedge/mediaedge.yaml",
		"bash completion: ok",
		"zsh completion: ok",
		"unit: ExecStart=/usr/bin/mediaedge run --config /etc/mediaedge/mediaedge.yaml",
		"check as mediaedge: /etc/mediaedge/mediaedge.yaml: OK",
		"after purge: gone",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q", want)
		}
	}
	if strings.Contains(out, "man: 0") || !strings.Contains(out, "man: ") {
		t.Error("no manual pages installed")
	}
	if _, err := os.Stat("/etc/mediaedge/mediaedge.yaml.dpkg-new"); err == nil {
		t.Error("the install leaked into the real root")
	}
}
