package e2e

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotRoot is returned by Run when the process lacks the privileges to
// create network namespaces; the test skips on it.
var ErrNotRoot = errors.New("e2e: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to build network namespaces")

// ErrMissingTool is wrapped by errors that name a program the scenario
// needs and could not find; the test skips on it.
var ErrMissingTool = errors.New("e2e: missing tool")

// CommandError is a command of the scenario that failed: the command line,
// its exit error and the tail of its output.
type CommandError struct {
	Args   []string
	Output string
	Err    error
}

func (e *CommandError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 600 {
		out = "..." + out[len(out)-600:]
	}
	if out == "" {
		return fmt.Sprintf("e2e: %s: %v", strings.Join(e.Args, " "), e.Err)
	}
	return fmt.Sprintf("e2e: %s: %v: %s", strings.Join(e.Args, " "), e.Err, out)
}

func (e *CommandError) Unwrap() error { return e.Err }
