package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// commandTimeout bounds every short command the scenario runs (ip, nft,
// sysctl): none should take more than a fraction of a second.
const commandTimeout = 15 * time.Second

// run runs a short command and returns its combined output. It fails with a
// *CommandError on a non-zero exit, and wraps ErrMissingTool when the
// program is not installed.
func run(ctx context.Context, name string, args ...string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%w: %s (%w)", ErrMissingTool, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w (after %s)", err, commandTimeout)
		}
		return out.String(), &CommandError{Args: append([]string{name}, args...), Output: out.String(), Err: err}
	}
	return out.String(), nil
}

// runStdin is run with data on standard input (nft -f -).
func runStdin(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%w: %s (%w)", ErrMissingTool, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewBufferString(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), &CommandError{Args: append([]string{name}, args...), Output: out.String(), Err: err}
	}
	return out.String(), nil
}
