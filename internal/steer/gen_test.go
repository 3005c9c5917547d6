package steer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSourceHashRecorded fails when bpf/steer.c changed without `make bpf`:
// the hash recorded at generation no longer matches. It needs no clang.
func TestSourceHashRecorded(t *testing.T) {
	src, err := os.ReadFile("bpf/steer.c")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := os.ReadFile("steer.c.sha256")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	if got, want := strings.Fields(string(rec))[0], hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("steer.c.sha256 records %s, source is %s: run `make bpf` and commit", got, want)
	}
}

// TestObjectMatchesSource rebuilds the object and bindings with bpf2go and
// compares them byte for byte with the committed ones.
func TestObjectMatchesSource(t *testing.T) {
	if testing.Short() {
		t.Skip("steer: rebuild check skipped in -short")
	}
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("steer: clang not installed; cannot rebuild the BPF object")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("steer: go not on PATH; cannot run bpf2go")
	}
	out := t.TempDir()
	cmd := exec.Command(goBin, "run", "github.com/cilium/ebpf/cmd/bpf2go",
		"-cc", "clang", "-cflags", "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu",
		"-target", "bpfel", "-type", "port_key", "-type", "port_val",
		"-output-dir", out, "-go-package", "steer", "steer", "bpf/steer.c")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, b)
	}
	for _, f := range []string{"steer_bpfel.o", "steer_bpfel.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s differs from a fresh build of bpf/steer.c (another clang version, or `make bpf` not run)", f)
		}
	}
}
