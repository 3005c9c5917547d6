package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// newWorkDir makes the run's directory (configuration, secrets, logs,
// captures): "<tmp>/<prefix>-<pid>-<random>", mode 0700.
func newWorkDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s-%d-", prefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("e2e: making the work directory: %w", err)
	}
	return dir, nil
}

// removeStaleWorkDirs removes the work directories of runs of prefix whose
// process is gone.
func removeStaleWorkDirs(prefix string) {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok || !e.IsDir() {
			continue
		}
		p, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 || pidAlive(pid) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
	}
}
