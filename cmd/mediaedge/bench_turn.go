package main

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
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
		allocs, setupConc            int
		indications, direct          bool
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
Setting up the allocations is reported on stderr (--quiet silences it).

--direct sends the same payloads from the same number of client sockets
straight to the echo peer, with no TURN server: the baseline of a relay
hop's cost. Every run reports the whole machine's busy CPU (/proc/stat)
per round trip; the hop costs that figure through the server minus the
--direct one with the same --allocations, --size and --rate.`,
		Example: `  mediaedge bench turn --server 127.0.0.1:3478 --user demo --password-file pw --allocations 10 --rate 2000
  mediaedge bench turn --server 127.0.0.1:3478 --user alice --secret-file /etc/mediaedge/turn-secret --rate 0 --count 10000
  mediaedge bench turn --direct --allocations 100 --rate 2000 --duration 2s`,
		Args: benchArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := benchSignalContext(cmd.Context())
			defer cancel()
			// The paced sender sleeps in nanosleep(2) on its locked
			// thread and keeps its P meanwhile: with one P (bench pinned
			// to one CPU) the readers wait until sysmon takes the P back,
			// which turns 50 µs gaps into milliseconds of round-trip time.
			// A second P lets the kernel schedule both threads.
			if runtime.GOMAXPROCS(0) < 2 && os.Getenv("GOMAXPROCS") == "" {
				runtime.GOMAXPROCS(2)
			}
			var sa netip.AddrPort
			if !direct {
				var err error
				if sa, err = netip.ParseAddrPort(server); err != nil {
					return fmt.Errorf("--server: %w", err)
				}
			} else {
				label = benchFirstNonEmpty(label, "direct (no server)")
			}
			opt := load.TURNOptions{Target: benchFirstNonEmpty(label, server), Server: sa, Username: user, Realm: realm,
				Allocations: allocs, Indications: indications, Direct: direct, SetupConcurrency: setupConc,
				Count: shape.count, Rate: shape.rate, Window: shape.window,
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
				var err error
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
			if rep.SetupFailed > 0 {
				return benchResultError(false, fmt.Sprintf("bench turn: %d of %d allocations could not be set up", rep.SetupFailed, allocs))
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
	f.BoolVar(&direct, "direct", false, "no TURN server: the same sockets send straight to the echo peer (the baseline of a relay hop's cost)")
	f.IntVar(&setupConc, "setup-concurrency", 64, "allocations set up at once")
	return cmd
}
