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
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/report"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/internal/control"
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
	cmd.AddCommand(newBenchSRTPCmd(g), newBenchTURNCmd(), newBenchVerifyCmd(), newBenchSuiteCmd(), newBenchNGCmd())
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

func (o *benchOutput) write(w io.Writer, rep *report.Report) error {
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
	if !isTerminal(f) {
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
func parseBenchKey(v, suite string) (srtpcheck.Key, error) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, " ") {
		return srtpcheck.ParseCryptoLine(v)
	}
	return srtpcheck.ParseKey(suite, v)
}

func newBenchSRTPCmd(g *globals) *cobra.Command {
	var (
		out                                 benchOutput
		shape                               loadFlags
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
		Example: `  mediaedge bench srtp --gateway --streams 100 --rate 5000 --duration 10s
  mediaedge bench srtp --gateway --pcap call.pcapng --write-pcap out.pcap --plot run.svg
  mediaedge bench srtp --spec rtpengine.json --rate 0 --count 20000 --json
  mediaedge bench srtp --target 127.0.0.1:20000 --recv 127.0.0.1:31100 --tx-key K1 --rx-key K2`,
		Args: benchArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := benchSignalContext(cmd.Context())
			defer cancel()
			opt := load.SRTPOptions{Target: label, Count: shape.count, Rate: shape.rate, Window: shape.window,
				Duration: shape.duration, MaxTime: shape.maxT, PayloadBytes: shape.size, RTCP: rtcpN, Drain: shape.drain,
				PID: shape.pid, AsFastAsPossible: afap, Progress: shape.progressWriter(cmd)}
			if pcapPath != "" {
				dgs, _, err := capture.ReadCaptureFile(pcapPath)
				if err != nil {
					return err
				}
				opt.Replay = capture.ExtractRTPStreams(dgs, capture.ExtractOptions{})
				if len(opt.Replay) == 0 {
					return fmt.Errorf("%w in %s", capture.ErrNoStreams, pcapPath)
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
			var flows []load.Flow
			var sessions *sut.GatewaySessions
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
				s, err := srtpcheck.LookupSuite(suite)
				if err != nil {
					return err
				}
				sessions, err = sut.SetupGateway(ctx, c, sut.GatewaySetup{Sessions: max(1, streams), Suite: s,
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
				if opt.PID == 0 {
					// Over the unix control socket the kernel tells who
					// serves it: measure the daemon without --pid.
					if path, ok := benchUnixSocket(g.control); ok {
						if pid, err := sut.SocketPeerPID(path); err == nil {
							opt.PID = pid
						}
					}
				}
			case specPath != "":
				sp, err := load.LoadSpec(specPath)
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
					flows = append(flows, load.Flow{Direction: "forward", TxKey: tk, RxKey: rk, Src: src, Target: ta, Recv: recv})
				}
				if opt.Target == "" {
					opt.Target = target
				}
			}
			rep, err := load.RunSRTP(ctx, flows, opt)
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
	shape.flags(cmd)
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
func benchVerifiedAll(rep *report.Report) bool {
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

func benchWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// benchUnixSocket returns the control socket path when the control API is
// reached over a unix socket (the same rule as control.NewClient).
func benchUnixSocket(addr string) (string, bool) {
	if addr == "" {
		return control.DefaultSocket(), true
	}
	if strings.HasPrefix(addr, "unix:") {
		return strings.TrimPrefix(addr, "unix:"), true
	}
	if strings.Contains(addr, "/") && !strings.HasPrefix(addr, "http") {
		return addr, true
	}
	return "", false
}
