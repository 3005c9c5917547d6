package fastpath

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

// TestSourceHashRecorded fails when bpf/turnfwd.c changed without `make bpf`:
// the hash recorded at generation no longer matches. It needs no clang.
func TestSourceHashRecorded(t *testing.T) {
	src, err := os.ReadFile("bpf/turnfwd.c")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := os.ReadFile("turnfwd.c.sha256")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	if got, want := strings.Fields(string(rec))[0], hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("turnfwd.c.sha256 records %s, source is %s: run `make bpf` and commit", got, want)
	}
}

// TestObjectMatchesSource rebuilds the object and bindings with bpf2go and
// compares them byte for byte with the committed ones.
func TestObjectMatchesSource(t *testing.T) {
	if testing.Short() {
		t.Skip("fastpath: rebuild check skipped in -short")
	}
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("fastpath: clang not installed; cannot rebuild the BPF object")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("fastpath: go not on PATH; cannot run bpf2go")
	}
	out := t.TempDir()
	cmd := exec.Command(goBin, "run", "github.com/cilium/ebpf/cmd/bpf2go",
		"-cc", "clang", "-cflags", "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu",
		"-target", "bpfel", "-type", "c2p_key", "-type", "p2c_key", "-type", "fwd_val",
		"-output-dir", out, "-go-package", "fastpath", "turnfwd", "bpf/turnfwd.c")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, b)
	}
	for _, f := range []string{"turnfwd_bpfel.o", "turnfwd_bpfel.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s differs from a fresh build of bpf/turnfwd.c (another clang version, or `make bpf` not run)", f)
		}
	}
}
