package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamplesPassConfigCheck runs `mediaedge config check` on every
// configuration under examples/, with the files they name under
// /etc/mediaedge (secrets, certificate) created in a scratch directory.
func TestExamplesPassConfigCheck(t *testing.T) {
	files, err := filepath.Glob("../../examples/*/mediaedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d example configurations, want at least 3", len(files))
	}
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f))
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "turn-secret"), randomText(t, 24)+"\n", 0o600)
			writeFile(t, filepath.Join(dir, "turn-users"), "monitor:"+randomText(t, 12)+"\n", 0o600)
			writeTestCert(t, dir)
			cfg := filepath.Join(dir, "mediaedge.yaml")
			writeFile(t, cfg, strings.ReplaceAll(string(data), "/etc/mediaedge/", dir+"/"), 0o640)
			out, stderr, err := opsCLI(t, "config", "check", cfg)
			if err != nil {
				t.Fatalf("config check: %v\n%s%s", err, out, stderr)
			}
		})
	}
}
