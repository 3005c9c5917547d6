package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/bench"
	"github.com/mediaedge/mediaedge/internal/config"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a media gateway or TURN server with verified packets",
		Long: `Drive a re-keying SRTP gateway or a TURN server from outside, over the
network, and verify every packet that comes back: loss, duplicates,
reordering, failed authentication, modified payloads, one-way latency
percentiles (HDR histogram), RFC 3550 jitter, and the CPU and memory of the
system under test given its PID. Works against mediaedge (through its
control API) and against any peer (fixed keys or a spec file).

See docs/bench.md.`,
	}
	cmd.AddCommand(newBenchSRTPCmd(g), newBenchTURNCmd(), newBenchVerifyCmd(), newBenchSuiteCmd())
	return cmd
}

// benchOutput are the output flags every bench command shares.
type benchOutput struct {
	json bool
	plot string
}

func (o *benchOutput) flags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.json, "json", false, "print the report as JSON instead of a table")
	cmd.Flags().StringVar(&o.plot, "plot", "", "write an SVG with the latency CDF and throughput over time to this file")
}

func (o *benchOutput) write(w io.Writer, rep *bench.Report) error {
	if o.plot != "" {
		f, err := os.Create(o.plot)
		if err != nil {
			return err
		}
		if err := rep.WritePlot(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if o.json {
		return rep.WriteJSON(w)
	}
	return rep.WriteTable(w)
}

// loadFlags are the load shape shared by srtp and turn.
type loadFlags struct {
	rate           float64
	count, window  int
	size           int
	duration, maxT time.Duration
	drain          time.Duration
	pid            int
	silent         bool
}

func (l *loadFlags) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Float64Var(&l.rate, "rate", 1000, "aggregate packets/s per direction; 0 = as fast as possible with --window in flight (needs --count)")
	f.IntVar(&l.count, "count", 0, "packets per stream (default: rate x duration / streams)")
	f.IntVar(&l.window, "window", 256, "packets in flight in max-rate mode")
	f.IntVar(&l.size, "size", 160, "payload bytes")
	f.DurationVar(&l.duration, "duration", 5*time.Second, "send phase when --count is not given")
	f.DurationVar(&l.maxT, "max-time", 0, "hard limit for the whole run (default 3 x duration + 10s)")
	f.DurationVar(&l.drain, "drain", 500*time.Millisecond, "wait this long for stragglers after the last send")
	f.IntVar(&l.pid, "pid", 0, "PID of the system under test: report its CPU time, packets per CPU-second and RSS")
	f.BoolVar(&l.silent, "quiet", false, "no progress line even on a terminal")
}

// progressWriter returns stderr when it is a terminal, nil otherwise.
func (l *loadFlags) progressWriter(cmd *cobra.Command) io.Writer {
	if l.silent {
		return nil
	}
	w := cmd.ErrOrStderr()
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return w
}

// signalContext ends on SIGINT/SIGTERM so that a run stops cleanly and
// still reports.
func benchSignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// resultError turns a failed verification into exit code 2.
func benchResultError(ok bool, what string) error {
	if ok {
		return nil
	}
	return &exitError{code: 2, err: errors.New(what)}
}

// parseKeyFlag accepts an a=crypto line or a bare base64 key of suite.
func parseBenchKey(v, suite string) (bench.Key, error) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, " ") {
		return bench.ParseCryptoLine(v)
	}
	return bench.ParseKey(suite, v)
}

func newBenchSRTPCmd(g *globals) *cobra.Command {
	var (
		out                                 benchOutput
		load                                loadFlags
		gateway                             bool
		specPath, pcapPath, writePcap       string
		target, recv, src, txKey, rxKey     string
		suite, txSuite, rxSuite, cloudSuite string
		intAddr, cloudAddr, label           string
		streams, rtcpN                      int
		afap, keep                          bool
		rekeyEvery                          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "srtp",
		Short: "Send SRTP through a re-keying gateway and verify every packet",
		Long: `Send S streams per direction through an SRTP re-keying gateway and verify
every packet that comes out: decrypted with the other leg's key, payload,
SSRC, sequence number and timestamp compared with what was sent.

The system under test is one of:
  --gateway     mediaedge's gateway, through its control API (--control):
                bench creates S sessions, drives both directions, deletes them
  --spec FILE   any gateway with fixed keys, described by a spec file (the
                srtpload contract, see docs/bench.md)
  --target ADDR --recv ADDR --tx-key K --rx-key K
                one stream copied S times, fixed keys

Payloads are synthetic (--size) or replayed from a capture (--pcap), with
the capture's timing unless --as-fast-as-possible.`,
		Example: `  mediaedge bench srtp --gateway --streams 100 --rate 5000 --duration 10s --pid $(pidof mediaedge)
  mediaedge bench srtp --gateway --pcap call.pcapng --write-pcap out.pcap --plot run.svg
  mediaedge bench srtp --spec rtpengine.json --rate 0 --count 20000 --json
  mediaedge bench srtp --target 127.0.0.1:20000 --recv 127.0.0.1:31100 --tx-key K1 --rx-key K2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := benchSignalContext(cmd.Context())
			defer cancel()
			opt := bench.SRTPOptions{Target: label, Count: load.count, Rate: load.rate, Window: load.window,
				Duration: load.duration, MaxTime: load.maxT, PayloadBytes: load.size, RTCP: rtcpN, Drain: load.drain,
				PID: load.pid, AsFastAsPossible: afap, Progress: load.progressWriter(cmd)}
			if pcapPath != "" {
				dgs, _, err := bench.ReadCaptureFile(pcapPath)
				if err != nil {
					return err
				}
				opt.Replay = bench.ExtractRTPStreams(dgs, bench.ExtractOptions{})
				if len(opt.Replay) == 0 {
					return fmt.Errorf("%w in %s", bench.ErrNoStreams, pcapPath)
				}
				if !cmd.Flags().Changed("rate") {
					opt.Rate = 0
				}
			}
			var wp *os.File
			if writePcap != "" {
				var err error
				if wp, err = os.Create(writePcap); err != nil {
					return err
				}
				defer wp.Close()
				opt.WritePcap = wp
			}
			if rekeyEvery > 0 && !gateway {
				return errors.New("bench srtp: --rekey-interval needs --gateway")
			}
			var flows []bench.Flow
			var sessions *bench.GatewaySessions
			modes := 0
			for _, b := range []bool{gateway, specPath != "", target != ""} {
				if b {
					modes++
				}
			}
			if modes != 1 {
				return errors.New("bench srtp: give exactly one of --gateway, --spec or --target")
			}
			switch {
			case gateway:
				ic, err := benchListenUDP(intAddr)
				if err != nil {
					return err
				}
				cc, err := benchListenUDP(cloudAddr)
				if err != nil {
					ic.Close()
					return err
				}
				opt.Conns = []*net.UDPConn{ic, cc}
				c, err := g.client()
				if err != nil {
					ic.Close()
					cc.Close()
					return err
				}
				defer c.Close()
				s, err := bench.LookupSuite(suite)
				if err != nil {
					return err
				}
				sessions, err = bench.SetupGateway(ctx, c, bench.GatewaySetup{Sessions: max(1, streams), Suite: s,
					CloudSuite: cloudSuite, Internal: benchUDPAddr(ic), Cloud: benchUDPAddr(cc)})
				if err != nil {
					ic.Close()
					cc.Close()
					return err
				}
				if !keep {
					defer func() {
						dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer dcancel()
						if err := sessions.Close(dctx); err != nil {
							fmt.Fprintln(cmd.ErrOrStderr(), "mediaedge:", err)
						}
					}()
				}
				flows = sessions.Flows
				if opt.Target == "" {
					opt.Target = "mediaedge gateway"
				}
				if rekeyEvery > 0 {
					opt.Rekey, opt.RekeyInterval = sessions.RekeyFlow, rekeyEvery
				}
			case specPath != "":
				sp, err := bench.LoadSpec(specPath)
				if err != nil {
					return err
				}
				if flows, err = sp.Flows(); err != nil {
					return err
				}
				if streams > 0 && streams < len(flows) {
					flows = flows[:streams]
				}
				if opt.PID == 0 {
					opt.PID = sp.PID
				}
				if opt.Target == "" {
					opt.Target = benchFirstNonEmpty(sp.Peer, specPath)
				}
			default:
				ts, rs := benchFirstNonEmpty(txSuite, suite), benchFirstNonEmpty(rxSuite, suite)
				tk, err := parseBenchKey(txKey, ts)
				if err != nil {
					return fmt.Errorf("--tx-key: %w", err)
				}
				rk, err := parseBenchKey(rxKey, rs)
				if err != nil {
					return fmt.Errorf("--rx-key: %w", err)
				}
				ta, err := netip.ParseAddrPort(target)
				if err != nil {
					return fmt.Errorf("--target: %w", err)
				}
				if recv == "" {
					return errors.New("bench srtp: --target needs --recv, the address the output arrives at")
				}
				for i := 0; i < max(1, streams); i++ {
					flows = append(flows, bench.Flow{Direction: "forward", TxKey: tk, RxKey: rk, Src: src, Target: ta, Recv: recv})
				}
				if opt.Target == "" {
					opt.Target = target
				}
			}
			rep, err := bench.RunSRTP(ctx, flows, opt)
			if err != nil {
				return err
			}
			if sessions != nil {
				if in, cl, err := sessions.Counters(ctx); err == nil {
					rep.Notes = append(rep.Notes, fmt.Sprintf("gateway counters: internal leg in %d out %d auth failures %d; cloud leg in %d out %d auth failures %d",
						in.PacketsIn, in.PacketsOut, in.AuthFailures, cl.PacketsIn, cl.PacketsOut, cl.AuthFailures))
				}
			}
			if err := out.write(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			return benchResultError(benchVerifiedAll(rep), "bench srtp: packets failed verification or none arrived")
		},
	}
	out.flags(cmd)
	load.flags(cmd)
	f := cmd.Flags()
	f.BoolVar(&gateway, "gateway", false, "drive mediaedge's gateway through the control API (--control)")
	f.StringVar(&specPath, "spec", "", "fixed-key spec file (srtpload format)")
	f.StringVar(&target, "target", "", "fixed keys: where to send SRTP")
	f.StringVar(&recv, "recv", "", "fixed keys: local address where the re-keyed SRTP arrives")
	f.StringVar(&src, "src", "", "fixed keys: local address to send from (default ephemeral)")
	f.StringVar(&txKey, "tx-key", "", "fixed keys: base64 key||salt (or an a=crypto line) to encrypt with")
	f.StringVar(&rxKey, "rx-key", "", "fixed keys: base64 key||salt (or an a=crypto line) to decrypt the output with")
	f.StringVar(&suite, "suite", "AES_CM_128_HMAC_SHA1_80", "crypto suite of bench's keys")
	f.StringVar(&txSuite, "tx-suite", "", "fixed keys: suite of --tx-key (default --suite)")
	f.StringVar(&rxSuite, "rx-suite", "", "fixed keys: suite of --rx-key (default --suite)")
	f.StringVar(&cloudSuite, "cloud-suite", "", "gateway: suite of the gateway's own key on the cloud leg (default: same as --suite)")
	f.StringVar(&intAddr, "internal", "127.0.0.1:0", "gateway: bench's internal peer address")
	f.StringVar(&cloudAddr, "cloud", "127.0.0.1:0", "gateway: bench's cloud peer address")
	f.IntVar(&streams, "streams", 1, "streams per direction (gateway: sessions)")
	f.IntVar(&rtcpN, "rtcp", 2, "SRTCP sender reports per stream to send and verify before the media")
	f.StringVar(&pcapPath, "pcap", "", "replay the RTP streams of this pcap/pcapng capture instead of synthetic payloads")
	f.BoolVar(&afap, "as-fast-as-possible", false, "with --pcap: ignore the capture's timing (windowed)")
	f.StringVar(&writePcap, "write-pcap", "", "write what came back, as received (encrypted), to this pcap file")
	f.StringVar(&label, "label", "", "name of the system under test in the report")
	f.BoolVar(&keep, "keep-sessions", false, "gateway: leave the sessions in place after the run")
	f.DurationVar(&rekeyEvery, "rekey-interval", 0, "gateway: re-key both legs of every session this often during the run (POST /v1/sessions/{id}/rekey) and verify across the switches")
	return cmd
}

// verifiedAll: something arrived and nothing failed verification. Loss
// alone is a measurement, not a failure.
func benchVerifiedAll(rep *bench.Report) bool {
	for _, d := range rep.Directions {
		if d.Failed() > 0 || d.Received == 0 {
			return false
		}
		if d.RTCP != nil && d.RTCP.Failed > 0 {
			return false
		}
	}
	return len(rep.Directions) > 0
}

func benchFirstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func benchListenUDP(addr string) (*net.UDPConn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("bad address %q: %w", addr, err)
	}
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
}

func benchUDPAddr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func newBenchTURNCmd() *cobra.Command {
	var (
		out                          benchOutput
		load                         loadFlags
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
needs allow-loopback-peers, mediaedge relay.allowed_peers.`,
		Example: `  mediaedge bench turn --server 127.0.0.1:3478 --user bench --password-file pw --allocations 100 --rate 20000
  mediaedge bench turn --server 127.0.0.1:3478 --user alice --secret-file /etc/mediaedge/turn-secret --rate 0 --count 10000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := benchSignalContext(cmd.Context())
			defer cancel()
			sa, err := netip.ParseAddrPort(server)
			if err != nil {
				return fmt.Errorf("--server: %w", err)
			}
			opt := bench.TURNOptions{Target: benchFirstNonEmpty(label, server), Server: sa, Username: user, Realm: realm,
				Allocations: allocs, Indications: indications, Count: load.count, Rate: load.rate, Window: load.window,
				Duration: load.duration, MaxTime: load.maxT, PayloadBytes: load.size, Drain: load.drain, PID: load.pid,
				Progress: load.progressWriter(cmd)}
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
			rep, err := bench.RunTURN(ctx, opt)
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
	load.flags(cmd)
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

func newBenchVerifyCmd() *cobra.Command {
	var (
		out                                  benchOutput
		internalPcap, cloudPcap, suite       string
		intIn, intOut, cloudOut, cloudIn     []string
		intInF, intOutF, cloudOutF, cloudInF []string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove a gateway's re-keying from an internal-side and a cloud-side capture",
		Long: `Read a capture taken on the gateway's internal side and one taken on its
cloud side, decrypt each with its leg's keys, and check: no plaintext RTP and
no packet authenticating with the other leg's keys on either side, every
payload identical after decryption, ROC and sequence continuity across
re-keys (give a leg's keys in the order they were used), and the latency the
gateway added per packet. Exits 2 when anything is wrong.

Keys are a=crypto lines or base64 key||salt of --suite, given directly or
in files (one per line, for keys that must not appear in the process list):
  --internal-in   K_int: the internal peer's key towards the gateway
  --internal-out  G_int: the gateway's key towards the internal peer
  --cloud-out     G_cloud: the gateway's key towards the cloud
  --cloud-in      K_cloud: the cloud peer's key towards the gateway`,
		Example: `  mediaedge bench verify --internal-pcap int.pcap --cloud-pcap cloud.pcap \
    --internal-in-file kint --internal-out-file gint --cloud-out-file gcloud --cloud-in-file kcloud`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var keys bench.VerifyKeys
			for _, k := range []struct {
				dst         *[]bench.Key
				vals, files []string
				name        string
			}{
				{&keys.InternalIn, intIn, intInF, "internal-in"}, {&keys.InternalOut, intOut, intOutF, "internal-out"},
				{&keys.CloudOut, cloudOut, cloudOutF, "cloud-out"}, {&keys.CloudIn, cloudIn, cloudInF, "cloud-in"},
			} {
				vals := append([]string(nil), k.vals...)
				for _, f := range k.files {
					b, err := config.ReadSecretFile(f)
					if err != nil {
						return err
					}
					for _, ln := range strings.Split(string(b), "\n") {
						if ln = strings.TrimSpace(ln); ln != "" {
							vals = append(vals, ln)
						}
					}
				}
				for i, v := range vals {
					key, err := parseBenchKey(v, suite)
					if err != nil {
						return fmt.Errorf("--%s key %d: %w", k.name, i+1, err)
					}
					*k.dst = append(*k.dst, key)
				}
			}
			idgs, _, err := bench.ReadCaptureFile(internalPcap)
			if err != nil {
				return fmt.Errorf("--internal-pcap: %w", err)
			}
			cdgs, _, err := bench.ReadCaptureFile(cloudPcap)
			if err != nil {
				return fmt.Errorf("--cloud-pcap: %w", err)
			}
			res, err := bench.Verify(idgs, cdgs, keys)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out.json {
				if err := benchWriteJSON(w, res); err != nil {
					return err
				}
			} else {
				for _, v := range res.Violations {
					fmt.Fprintln(w, v)
				}
				for _, rk := range res.ReKeys {
					fmt.Fprintln(w, "re-key:", rk)
				}
				if err := res.Report.WriteTable(w); err != nil {
					return err
				}
				fmt.Fprintf(w, "%d violations\n", len(res.Violations))
			}
			if out.plot != "" {
				o := benchOutput{plot: out.plot}
				if err := o.write(io.Discard, res.Report); err != nil {
					return err
				}
			}
			return benchResultError(res.OK(), "bench verify: re-keying violations found")
		},
	}
	out.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&internalPcap, "internal-pcap", "", "capture taken on the gateway's internal side (required)")
	f.StringVar(&cloudPcap, "cloud-pcap", "", "capture taken on the gateway's cloud side (required)")
	f.StringVar(&suite, "suite", "AES_CM_128_HMAC_SHA1_80", "suite of keys given as bare base64")
	f.StringArrayVar(&intIn, "internal-in", nil, "K_int (repeat for each key epoch, in order)")
	f.StringArrayVar(&intOut, "internal-out", nil, "G_int (repeatable)")
	f.StringArrayVar(&cloudOut, "cloud-out", nil, "G_cloud (repeatable)")
	f.StringArrayVar(&cloudIn, "cloud-in", nil, "K_cloud (repeatable)")
	f.StringArrayVar(&intInF, "internal-in-file", nil, "file with K_int keys, one per line")
	f.StringArrayVar(&intOutF, "internal-out-file", nil, "file with G_int keys")
	f.StringArrayVar(&cloudOutF, "cloud-out-file", nil, "file with G_cloud keys")
	f.StringArrayVar(&cloudInF, "cloud-in-file", nil, "file with K_cloud keys")
	_ = cmd.MarkFlagRequired("internal-pcap")
	_ = cmd.MarkFlagRequired("cloud-pcap")
	return cmd
}

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

func benchWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
