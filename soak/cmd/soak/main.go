// Command soak runs the mediaedge soak (package soak) and exits 0 when it
// passed, 1 when it failed and 2 when it could not run. `make soak` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
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
	flap := flag.Bool("flap", true, "flap an uplink in a network namespace of the soak's own (needs root and unshare)")
	flag.Parse()
	o.Progress = os.Stderr
	switch {
	case !*flap:
		o.FlapNote = "-flap=false"
	case os.Getenv(netnsEnv) == "":
		// Run again inside a new network namespace, where the soak owns
		// the uplink it flaps; everything else is loopback.
		if note := reexecInNetns(); note != "" {
			o.FlapNote = note
		}
	default:
		if err := setupUplink(); err != nil {
			fmt.Fprintln(os.Stderr, "soak: setting up the uplink:", err)
			os.Exit(2)
		}
		o.Uplink = uplink
	}
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

const (
	netnsEnv = "MEDIAEDGE_SOAK_NETNS"
	uplink   = "wan0"
)

// reexecInNetns runs the soak again under `unshare --net` and exits with
// its status; it returns why it could not (the flap is then skipped).
func reexecInNetns() string {
	if os.Geteuid() != 0 {
		return "not root: a network namespace for the uplink needs root"
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return "unshare (util-linux) not found"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "ip (iproute2) not found"
	}
	self, err := os.Executable()
	if err != nil {
		return err.Error()
	}
	cmd := exec.Command(unshare, append([]string{"--net", "--", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM) // the child handles them
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	os.Exit(0)
	return ""
}

// setupUplink brings up loopback and a veth pair (wan0, whose far end holds
// the uplink's gateway address) in the new namespace.
func setupUplink() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", uplink, "type", "veth", "peer", "name", uplink + "p"},
		{"addr", "add", "198.51.100.2/24", "dev", uplink},
		{"addr", "add", soak.UplinkGateway + "/24", "dev", uplink + "p"},
		{"link", "set", uplink + "p", "up"},
		{"link", "set", uplink, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
