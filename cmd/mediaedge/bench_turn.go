package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/internal/config"
)

// newBenchTURNCmd is `mediaedge bench turn`.
func newBenchTURNCmd() *cobra.Command {
	var (
		out                          benchOutput
		shape                        loadFlags
		server, user, passFile, peer string
		secretFile, realm, label     string
		allocs                       int
		indications                  bool
	)
	cmd := &cobra.Command{
		Use:   "turn",
		Short: "Open N allocations on a TURN server and verify every relayed packet",
		Long: `Open N allocations on any TURN server (UDP), send through each to bench's
own echo peer with ChannelData (or Send indications) and verify every
echo: loss, duplicates, failed payloads, round-trip latency percentiles,
and the server's CPU and RSS given its PID. Credentials are long-term
(--user, --password-file) or TURN REST (--user, --secret-file).

The server must admit the echo peer's address (loopback by default): coturn
needs allow-loopback-peers, mediaedge relay.allowed_peers (the trial
configuration of 'mediaedge run' without --config admits loopback peers).
Setting up the allocations is reported on stderr (--quiet silences it).`,
		Example: `  mediaedge bench turn --server 127.0.0.1:3478 --user demo --password-file pw --allocations 10 --rate 2000
  mediaedge bench turn --server 127.0.0.1:3478 --user alice --secret-file /etc/mediaedge/turn-secret --rate 0 --count 10000`,
		Args: benchArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := benchSignalContext(cmd.Context())
			defer cancel()
			sa, err := netip.ParseAddrPort(server)
			if err != nil {
				return fmt.Errorf("--server: %w", err)
			}
			opt := load.TURNOptions{Target: benchFirstNonEmpty(label, server), Server: sa, Username: user, Realm: realm,
				Allocations: allocs, Indications: indications, Count: shape.count, Rate: shape.rate, Window: shape.window,
				Duration: shape.duration, MaxTime: shape.maxT, PayloadBytes: shape.size, Drain: shape.drain, PID: shape.pid,
				Progress: shape.progressWriter(cmd)}
			if !shape.silent {
				opt.Status = cmd.ErrOrStderr()
			}
			if passFile != "" {
				b, err := config.ReadSecretFile(passFile)
				if err != nil {
					return err
				}
				opt.Password = strings.TrimSpace(string(b))
			}
			if secretFile != "" {
				b, err := config.ReadSecretFile(secretFile)
				if err != nil {
					return err
				}
				opt.Secret = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
			}
			if peer != "" {
				if opt.Peer, err = netip.ParseAddrPort(peer); err != nil {
					return fmt.Errorf("--peer: %w", err)
				}
			}
			rep, err := load.RunTURN(ctx, opt)
			if err != nil {
				return err
			}
			if err := out.write(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			return benchResultError(benchVerifiedAll(rep), "bench turn: packets failed verification or none came back")
		},
	}
	out.flags(cmd)
	shape.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&server, "server", "127.0.0.1:3478", "TURN server UDP address")
	f.StringVar(&user, "user", "", "TURN username (with --secret-file: the user part of the REST username)")
	f.StringVar(&passFile, "password-file", "", "file holding the long-term password")
	f.StringVar(&secretFile, "secret-file", "", "file holding the TURN REST shared secret (first line)")
	f.StringVar(&realm, "realm", "", "realm (default: the server's)")
	f.StringVar(&peer, "peer", "", "external echo peer address (default: bench's own on loopback)")
	f.StringVar(&label, "label", "", "name of the server in the report")
	f.IntVar(&allocs, "allocations", 1, "number of allocations")
	f.BoolVar(&indications, "indications", false, "send Send indications instead of ChannelData")
	return cmd
}
