package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mediaedge/mediaedge/internal/config"
)

// strictTree makes every command of the tree refuse what it does not know:
// a command that only groups subcommands fails on an unknown one ("session
// lst") with cobra's suggestions instead of printing its help and exiting 0,
// and an unknown flag names the closest known one.
func strictTree(root *cobra.Command) {
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(flagError)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// cobra reads the distance of the command the typo was made under,
		// and leaves it 0 (no suggestions) on all but the root.
		c.SuggestionsMinimumDistance = 2
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil && c != root {
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRun
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// groupRun is the RunE of a command that only groups subcommands: without
// arguments it prints its help; with one it fails like the root does for an
// unknown command.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(quoteAll(s), " or ") + "?"
	}
	return &exitError{code: 2, err: fmt.Errorf("%s (see '%s --help')", msg, cmd.CommandPath())}
}

// flagError adds a suggestion to pflag's "unknown flag: --jsn".
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if strings.Contains(msg, `for "--pid" flag`) {
		// --pid "$(pidof mediaedge)" with several daemons.
		return &exitError{code: 2, err: fmt.Errorf("%s: %s", msg, pidHint)}
	}
	name, ok := strings.CutPrefix(msg, "unknown flag: --")
	if !ok {
		return &exitError{code: 2, err: err}
	}
	name, _, _ = strings.Cut(name, "=")
	// The closest name within two edits; among equals, one the typed name
	// is an abbreviation of (letters left out: --usr for --user).
	best, bestScore := "", 5
	visit := func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		score := 2 * config.EditDistance(name, f.Name)
		if !isSubsequence(name, f.Name) {
			score++
		}
		if score < bestScore {
			best, bestScore = f.Name, score
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	if best != "" {
		msg += fmt.Sprintf("; did you mean --%s?", best)
	}
	return &exitError{code: 2, err: fmt.Errorf("%s (see '%s --help')", msg, cmd.CommandPath())}
}

// isSubsequence reports whether a's letters appear in b in order.
func isSubsequence(a, b string) bool {
	for i := 0; i < len(b) && a != ""; i++ {
		if b[i] == a[0] {
			a = a[1:]
		}
	}
	return a == ""
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
