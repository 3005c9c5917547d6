package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestUnitCommandLinesParse checks that every mediaedge command line in
// the systemd unit names a command and flags the CLI has: a renamed flag
// would otherwise surface only when systemd runs it (for ExecStop, at the
// next stop, silently skipped because of its "-" prefix).
func TestUnitCommandLinesParse(t *testing.T) {
	data, err := os.ReadFile("../../systemd/mediaedge.service.in")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		key, val, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(key, "Exec") {
			continue
		}
		val = strings.TrimLeft(val, "-:+!") // systemd prefixes; "@" is not used by the unit
		fields := strings.Fields(val)
		if len(fields) == 0 || fields[0] != "@BINDIR@/mediaedge" {
			continue
		}
		n++
		root := newRootCmd(io.Discard, io.Discard)
		cmd, args, err := root.Find(fields[1:])
		if err != nil || cmd == root {
			t.Errorf("%s: no such command: %v", key, err)
			continue
		}
		if err := cmd.ParseFlags(args); err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	if n < 3 {
		t.Errorf("found %d mediaedge command lines in the unit, want ExecStartPre, ExecStart and ExecStop", n)
	}
}
