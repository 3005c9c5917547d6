package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/bench"
)

// newBenchSuiteCmd is `mediaedge bench suite`, what `make bench` runs.
func newBenchSuiteCmd() *cobra.Command {
	var (
		out           string
		noPeers, noMe bool
		quick         bool
		mediaedge     string
	)
	cmd := &cobra.Command{
		Use:   "suite",
		Short: "Run the standard benchmark suite (make bench) and write a markdown report",
		Long: `Run the standard suite: the SRTP gateway with 1 and 100 streams of 160 and
1200 bytes, and the TURN relay with 1, 10 and 100 allocations, each at a
realistic fixed rate (50 packets/s per stream) and at the highest rate a
bounded window allows. mediaedge is started from this binary with a
loopback configuration; coturn and rtpengine, when installed, are started
too and measured in the same run, with same-run ratios. Every process
started is stopped at the end. Writes report.md, report.json, SVG plots
and the processes' logs to --out.`,
		Example: `  flock /tmp/mediaedge-perf.lock mediaedge bench suite --out bench-results/today`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := benchSignalContext(cmd.Context())
			defer cancel()
			if out == "" {
				out = filepath.Join("bench-results", time.Now().Format("20060102-150405"))
			}
			bin := mediaedge
			if bin == "" && !noMe {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				bin = exe
			}
			if noMe {
				bin = ""
			}
			err := bench.RunSuite(ctx, bench.SuiteOptions{OutDir: out, Mediaedge: bin, Peers: !noPeers, Quick: quick, Log: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "report: %s\n", filepath.Join(out, "report.md"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "output directory (default bench-results/<date-time>)")
	f.StringVar(&mediaedge, "mediaedge", "", "mediaedge binary to measure (default: this one)")
	f.BoolVar(&noMe, "no-mediaedge", false, "measure only the peers")
	f.BoolVar(&noPeers, "no-peers", false, "do not start coturn or rtpengine")
	f.BoolVar(&quick, "quick", false, "short trials (a smoke test, not figures to publish)")
	return cmd
}
