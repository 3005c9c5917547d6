package testutil

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

// BPFObject names a BPF program whose object and Go bindings bpf2go
// generated into the package directory and which are committed, so that
// building the daemon needs no clang.
type BPFObject struct {
	Ident   string   // bpf2go's identifier: files <Ident>_bpfel.{o,go}
	Source  string   // the C source, e.g. "bpf/steer.c"
	Package string   // the Go package of the bindings
	Types   []string // the C types given to bpf2go with -type
}

// CheckBPFSourceHash fails when the C source changed without `make bpf`:
// the hash recorded at generation (<source's base name>.sha256, written by
// the package's go:generate line) no longer matches. It needs no clang.
func CheckBPFSourceHash(t *testing.T, o BPFObject) {
	t.Helper()
	src, err := os.ReadFile(o.Source)
	if err != nil {
		t.Fatal(err)
	}
	recFile := filepath.Base(o.Source) + ".sha256"
	rec, err := os.ReadFile(recFile)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	if got, want := strings.Fields(string(rec))[0], hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("%s records %s, source is %s: run `make bpf` and commit", recFile, got, want)
	}
}

// CheckBPFObject rebuilds the object and bindings with bpf2go, with the
// flags of the packages' go:generate lines, and compares them byte for
// byte with the committed ones. It skips in -short and without clang.
func CheckBPFObject(t *testing.T, o BPFObject) {
	t.Helper()
	if testing.Short() {
		t.Skip(o.Package + ": rebuild check skipped in -short")
	}
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip(o.Package + ": clang not installed; cannot rebuild the BPF object")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip(o.Package + ": go not on PATH; cannot run bpf2go")
	}
	out := t.TempDir()
	args := []string{"run", "github.com/cilium/ebpf/cmd/bpf2go",
		"-cc", "clang", "-cflags", "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu",
		"-target", "bpfel"}
	for _, ty := range o.Types {
		args = append(args, "-type", ty)
	}
	args = append(args, "-output-dir", out, "-go-package", o.Package, o.Ident, o.Source)
	if b, err := exec.Command(goBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, b)
	}
	for _, f := range []string{o.Ident + "_bpfel.o", o.Ident + "_bpfel.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s differs from a fresh build of %s (another clang version, or `make bpf` not run)", f, o.Source)
		}
	}
}
