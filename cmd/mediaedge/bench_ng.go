package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/bench/ngload"
)

func newBenchNGCmd() *cobra.Command {
	var (
		server  string
		o       ngload.Options
		asJSON  bool
		maxTime time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ng",
		Short: "Drive ng offer/answer/delete round trips at a set rate and print their percentiles",
		Long: `Set up and delete calls over rtpengine's ng protocol (UDP) against any ng
server, mediaedge's gateway.ng listener or rtpengine, at a set rate, with
--live other calls kept up meanwhile, and print the percentiles of the
round trips (offer, answer and delete each, from the first send to the
reply). Each call is real SDP with SDES (AES_CM_128_HMAC_SHA1_80) and
rtcp-mux from 127.0.0.1; the server allocates ports for it. Requests the
server refuses are counted as errors (the first one is printed).

See docs/ng.md.`,
		Example: `  mediaedge bench ng --server 127.0.0.1:2224 --calls 1000 --rate 200
  mediaedge bench ng --server 127.0.0.1:2223 --calls 2000 --rate 200 --live 1000`,
		Args: benchArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := benchSignalContext(cmd.Context())
			defer cancel()
			sa, err := netip.ParseAddrPort(server)
			if err != nil {
				return fmt.Errorf("--server: %w", err)
			}
			o.Server, o.MaxTime = sa, maxTime
			r, err := ngload.Run(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			}
			return r.WriteTable(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "127.0.0.1:2224", "the ng server's UDP address")
	f.IntVar(&o.Calls, "calls", 1000, "calls to set up and delete (measured)")
	f.Float64Var(&o.Rate, "rate", 200, "calls set up a second (0: one after the other, as fast as the server answers)")
	f.IntVar(&o.Live, "live", 0, "other calls set up first and kept up during the run")
	f.DurationVar(&maxTime, "max-time", time.Hour, "bound on the whole run")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON instead of a table")
	return cmd
}
