package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// pidHint is what to do when `--pid $(pidof mediaedge)` found several.
const pidHint = "--pid takes one process and `pidof mediaedge` printed several: use `pidof -s mediaedge`, " +
	"`systemctl show -p MainPID --value mediaedge`, or (with --gateway on a unix socket) leave --pid out: bench asks the socket who serves it"

// benchArgs is cobra.NoArgs for the bench commands, explaining the case
// where the extra arguments are the further PIDs of `--pid $(pidof X)`.
func benchArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if f := cmd.Flags().Lookup("pid"); f != nil && f.Changed && allNumbers(args) {
		return &exitError{code: 2, err: fmt.Errorf("--pid %s %s: %s", f.Value, strings.Join(args, " "), pidHint)}
	}
	return cobra.NoArgs(cmd, args)
}

func allNumbers(args []string) bool {
	for _, a := range args {
		if _, err := strconv.Atoi(a); err != nil {
			return false
		}
	}
	return true
}
