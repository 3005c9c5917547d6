package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildMediaedge builds the daemon (./cmd/mediaedge of this module, static)
// into a temporary directory removed when the test ends and returns its
// path. A tree that does not build fails the test: a test that needs the
// binary must never pass by skipping. It uses the go command that runs
// the test (go test puts its own first on PATH).
func BuildMediaedge(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mediaedge")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/mediaedge/mediaedge/cmd/mediaedge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mediaedge: %v\n%s", err, out)
	}
	return bin
}
