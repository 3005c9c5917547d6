package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestInstallReadableByService: after `make install`, the unit's user
// (mediaedge, through its group) can read the configuration, so that the
// unit's ExecStartPre=mediaedge config check passes: directory 0750 and
// file 0640, root:mediaedge, whether the group existed at install time
// (make install sets it) or was made afterwards (the tmpfiles.d lines).
func TestInstallReadableByService(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: make install and running config check as user mediaedge")
	}
	for _, tool := range []string{"make", "systemd-sysusers", "systemd-tmpfiles"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install make systemd)", tool)
		}
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The service account, as a package install would make it. It is left
	// in place: other tests and a later install use the same account.
	if _, err := user.Lookup("mediaedge"); err != nil {
		if out, err := exec.Command("systemd-sysusers", filepath.Join(repo, "systemd/mediaedge.sysusers")).CombinedOutput(); err != nil {
			t.Fatalf("systemd-sysusers: %v\n%s", err, out)
		}
	}
	u, err := user.Lookup("mediaedge")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	dest := t.TempDir()
	// The service user must be able to walk down to DESTDIR.
	for d := dest; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	install := exec.Command("make", "-C", repo, "install", "DESTDIR="+dest, "PREFIX=/usr")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	etc := filepath.Join(dest, "etc/mediaedge")
	yaml := filepath.Join(etc, "mediaedge.yaml")
	bin := filepath.Join(dest, "usr/bin/mediaedge")

	checkAsService := func(t *testing.T) {
		t.Helper()
		for _, f := range []struct {
			path string
			mode os.FileMode
		}{{etc, 0o750 | os.ModeDir}, {yaml, 0o640}} {
			fi, err := os.Stat(f.path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != f.mode || st.Uid != 0 || int(st.Gid) != gid {
				t.Errorf("%s: %v %d:%d, want %v root:mediaedge", f.path, fi.Mode(), st.Uid, st.Gid, f.mode)
			}
		}
		cmd := exec.Command(bin, "config", "check", "--skip-secrets", yaml)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("config check as mediaedge: %v\n%s", err, out)
		}
	}
	t.Run("group at install time", checkAsService)

	// README's order: make install before systemd-sysusers, so the files
	// are root:root until systemd-tmpfiles --create gives them the group.
	for _, p := range []string{etc, yaml} {
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"passwd", "group"} {
		data, err := os.ReadFile("/etc/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dest, "etc", f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmpfiles := exec.Command("systemd-tmpfiles", "--create", "--root="+dest, filepath.Join(dest, "usr/lib/tmpfiles.d/mediaedge.conf"))
	if out, err := tmpfiles.CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	t.Run("group after systemd-tmpfiles", checkAsService)
}
