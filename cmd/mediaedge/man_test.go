package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestManPages writes the manual pages and checks there is one per
// visible command, named as man(1) finds them, and none for hidden ones.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := opsCLI(t, "man", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		want[strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = true
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRootCmd(io.Discard, io.Discard)
	root.InitDefaultCompletionCmd() // cobra adds it when the tree runs
	walk(root)
	got, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if !want[e.Name()] {
			t.Errorf("unexpected page %s", e.Name())
		}
		delete(want, e.Name())
	}
	for name := range want {
		t.Errorf("no page %s", name)
	}
	page, err := os.ReadFile(filepath.Join(dir, "mediaedge-drain.1"))
	if err != nil || !strings.Contains(string(page), ".TH \"MEDIAEDGE\" \"1\"") || !strings.Contains(string(page), "deadline") {
		t.Errorf("mediaedge-drain.1: %v\n%.300s", err, page)
	}
}
