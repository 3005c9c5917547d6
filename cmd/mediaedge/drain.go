package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/control"
)

func newDrainCmd(g *globals) *cobra.Command {
	var (
		deadline time.Duration
		wait     bool
	)
	cmd := &cobra.Command{
		Use:   "drain",
		Short: "Stop taking new calls, let live ones end, then stop the daemon",
		Long: `Drain the running daemon: /readyz answers 503 "draining" at once so that a
load balancer sends new clients elsewhere, the relay answers new Allocate
requests with 486 and the gateway refuses new sessions with 503, while live
allocations and sessions keep relaying. When the last one has ended, or at
the deadline, the daemon stops (exit status 0).

A second drain can only bring the deadline forward. With --wait the command
returns once the daemon has exited; the systemd unit's ExecStop uses it.`,
		Example: `  mediaedge drain
  mediaedge drain --deadline 30m
  mediaedge drain --deadline 60s --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if deadline < 0 {
				return errors.New("drain: --deadline must not be negative")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			var st daemon.DrainStatus
			if err := c.Do(cmd.Context(), "POST", "/v1/drain", daemon.DrainRequest{Deadline: deadline.String()}, &st); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "draining: %d allocation(s) and %d session(s) left; the daemon stops when they end or at %s\n",
				st.Allocations, st.Sessions, st.Deadline.UTC().Format(time.RFC3339))
			if !wait {
				return nil
			}
			// The daemon stops at the deadline at the latest; allow it the
			// time its own shutdown takes on top.
			ctx, cancel := context.WithDeadline(cmd.Context(), st.Deadline.Add(time.Minute))
			defer cancel()
			if err := waitForExit(ctx, c); err != nil {
				return err
			}
			fmt.Fprintln(out, "stopped")
			return nil
		},
	}
	cmd.Flags().DurationVar(&deadline, "deadline", daemon.DefaultDrainDeadline, "longest wait for live calls before the daemon stops anyway")
	cmd.Flags().BoolVar(&wait, "wait", false, "return only once the daemon has exited")
	return cmd
}

// waitForExit polls the control API until it stops answering.
func waitForExit(ctx context.Context, c *control.Client) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.Do(rctx, "GET", "/v1/status", nil, nil)
		cancel()
		var ae *control.APIError
		if err != nil && !errors.As(err, &ae) && ctx.Err() == nil {
			return nil // the socket is gone or refuses: the daemon has exited
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: the daemon still runs: %w", ctx.Err())
		case <-t.C:
		}
	}
}
