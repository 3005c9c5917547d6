// Command soak runs the mediaedge soak (package soak) and exits 0 when it
// passed, 1 when it failed and 2 when it could not run. `make soak` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/mediaedge/mediaedge/soak"
)

func main() {
	o := soak.DefaultOptions()
	flag.StringVar(&o.Bin, "bin", "bin/mediaedge", "mediaedge binary")
	flag.StringVar(&o.Out, "out", "soak-results", "directory for the report")
	flag.DurationVar(&o.Duration, "duration", o.Duration, "measured run after set-up")
	flag.IntVar(&o.Allocations, "allocations", o.Allocations, "idle TURN allocations")
	flag.IntVar(&o.Sessions, "sessions", o.Sessions, "idle gateway sessions")
	flag.IntVar(&o.MediaAllocations, "media-allocations", o.MediaAllocations, "allocations with media")
	flag.IntVar(&o.MediaSessions, "media-sessions", o.MediaSessions, "sessions with media")
	flag.IntVar(&o.PPS, "pps", o.PPS, "packets a second per sampled stream")
	flag.DurationVar(&o.WarmUp, "warmup", 0, "left out of the flatness check (0: a fifth of the run, at least 1m)")
	flag.Parse()
	o.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := soak.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	report := filepath.Join(o.Out, "report.md")
	if !res.Pass {
		fmt.Fprintf(os.Stderr, "soak: FAIL (%d problems), see %s\n", len(res.Failures), report)
		for _, f := range res.Failures {
			fmt.Fprintln(os.Stderr, "  ", f)
		}
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "soak: PASS, see %s\n", report)
}
