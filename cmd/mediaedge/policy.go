package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/policy"
)

const defaultConfigPath = "/etc/mediaedge/mediaedge.yaml"

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Plan, apply and inspect split-tunnel routing",
		Long: `Split-tunnel policy routing keeps real-time media off a full-tunnel VPN: media
leaves through the direct uplink, everything else keeps using the VPN.

plan, apply, flush and check talk to the kernel directly; status asks the
running daemon and falls back to the kernel. docs/policy.md explains the
rule set.`,
		Example: `  mediaedge policy plan --config /etc/mediaedge/mediaedge.yaml
  mediaedge policy check 52.112.0.10 --udp 3478 --from 10.20.0.10 --iif lan0
  mediaedge policy import-m365 endpoints.json -o /var/lib/mediaedge/m365-media.json`,
	}
	cmd.AddCommand(newPolicyPlanCmd(), newPolicyApplyCmd(), newPolicyFlushCmd(), newPolicyStatusCmd(g),
		newPolicyCheckCmd(), newPolicyImportCmd(), newPolicyPresetsCmd())
	return cmd
}

// loadPolicy reads the policy section of the configuration file. Problems
// are printed one per line with their key path; the error then carries
// exit status 2, as for `mediaedge run`.
func loadPolicy(path string, stderr io.Writer) (policy.Config, error) {
	cfg, err := daemon.Load(path, config.Options{SkipSecrets: true})
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				fmt.Fprintf(stderr, "%s: %s\n", path, p)
			}
			return policy.Config{}, &exitError{code: 2, err: fmt.Errorf("%s: %d problem(s)", path, len(ps))}
		}
		return policy.Config{}, &exitError{code: 2, err: err}
	}
	return cfg.Policy, nil
}

func configFlag(cmd *cobra.Command, path *string, help string) {
	cmd.Flags().StringVarP(path, "config", "c", defaultConfigPath, help)
}

func printLines(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func newPolicyPlanCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Print the ip commands that apply would run, changing nothing",
		Long: `Compute the rule set for the configuration and the uplink's current state, read
the kernel, and print the ip commands that would turn one into the other
(stdout, one per line: they can be reviewed or run by hand). Nothing is
changed; no privileges are needed. Warnings go to stderr.`,
		Example: "  mediaedge policy plan --config /etc/mediaedge/mediaedge.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadPolicy(path, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep, err := policy.Plan(cmd.Context(), cfg)
			printLines(cmd.OutOrStdout(), rep.Changes)
			summarize(cmd.ErrOrStderr(), rep.Status, len(rep.Changes), "change(s) to make")
			return err
		},
	}
	configFlag(cmd, &path, "configuration file")
	return cmd
}

func newPolicyApplyCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Install the rule set once, as the daemon's first pass does",
		Long: `Install the rule set for the configuration: add what is missing, then delete
what mediaedge owns and no longer wants (objects of an earlier
configuration included). Prints the ip commands it ran. Nothing guards the
result afterwards: run the daemon for that. Needs CAP_NET_ADMIN.`,
		Example: "  sudo mediaedge policy apply --config /etc/mediaedge/mediaedge.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadPolicy(path, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep, err := policy.Apply(cmd.Context(), cfg)
			printLines(cmd.OutOrStdout(), rep.Changes)
			summarize(cmd.ErrOrStderr(), rep.Status, len(rep.Changes), "change(s) made")
			return permissionHint(err)
		},
	}
	configFlag(cmd, &path, "configuration file")
	return cmd
}

func newPolicyFlushCmd() *cobra.Command {
	var (
		path  string
		proto int
	)
	cmd := &cobra.Command{
		Use:   "flush",
		Short: "Remove every rule and route mediaedge installed",
		Long: `Delete every rule and route in mediaedge's routing protocol (policy.protocol of
the configuration, or --protocol), rules first. The kernel's own rules and
everyone else's objects are left alone: this is not 'ip rule flush', which
also deletes the main and default rules. A running daemon in enforce mode
puts its rule set back on its next pass: stop it first.`,
		Example: "  sudo mediaedge policy flush\n  sudo mediaedge policy flush --protocol 77",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("protocol") {
				cfg, err := loadPolicy(path, cmd.ErrOrStderr())
				switch {
				case err == nil:
					proto = cfg.Protocol
				case cmd.Flags().Changed("config"):
					return err
				default:
					proto = policy.DefaultConfig().Protocol
				}
			}
			cmds, err := policy.Flush(cmd.Context(), proto)
			printLines(cmd.OutOrStdout(), cmds)
			fmt.Fprintf(cmd.ErrOrStderr(), "%d object(s) of protocol %d removed\n", len(cmds), proto)
			return permissionHint(err)
		},
	}
	configFlag(cmd, &path, "configuration file whose policy.protocol to flush")
	cmd.Flags().IntVar(&proto, "protocol", 0, "routing protocol number to flush (default: the configuration's, else 77)")
	return cmd
}

// permissionHint adds what to do to a refusal for lack of privileges.
func permissionHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (changing routing needs root or CAP_NET_ADMIN)", err)
	}
	return err
}

// summarize prints the uplink state and the warnings of a one-shot
// command.
func summarize(w io.Writer, st policy.Status, n int, what string) {
	fmt.Fprintf(w, "uplink %s: %s\n", orDash(st.Uplink.Interface), st.Uplink.State)
	for _, f := range []struct {
		name string
		s    *policy.FamilyStatus
	}{{"ipv4", st.Uplink.IPv4}, {"ipv6", st.Uplink.IPv6}} {
		if f.s != nil && !f.s.Usable {
			fmt.Fprintf(w, "  %s not usable: %s\n", f.name, f.s.Reason)
		}
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "error: %s\n", st.LastError)
	}
	fmt.Fprintf(w, "%d %s\n", n, what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newPolicyStatusCmd(g *globals) *cobra.Command {
	var (
		path   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show desired against actual rules, the uplink and the last repair",
		Long: `Ask the running daemon (GET /v1/policy/status) for the policy's state: the
uplink, the media set, every rule and route it wants and whether the kernel
has it, the last reconcile and the last repair of drift. When the daemon
cannot be reached, read the kernel directly for the configuration file
(no last reconcile or repair then).`,
		Example: "  mediaedge policy status\n  mediaedge policy status --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st policy.Status
			source := "daemon"
			err := func() error {
				c, err := g.client()
				if err != nil {
					return err
				}
				defer c.Close()
				return c.Do(cmd.Context(), "GET", "/v1/policy/status", nil, &st)
			}()
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "daemon not reachable (%v); showing the kernel's view for %s\n", err, path)
				cfg, lerr := loadPolicy(path, cmd.ErrOrStderr())
				if lerr != nil {
					return lerr
				}
				rep, perr := policy.Plan(cmd.Context(), cfg)
				if perr != nil && rep.Status.Mode == "" {
					return perr
				}
				st, source = rep.Status, "kernel"
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(out, st, source)
			return nil
		},
	}
	configFlag(cmd, &path, "configuration file used when the daemon is not reachable")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, st policy.Status, source string) {
	fmt.Fprintf(w, "policy: %s, mode %s (from the %s)\n", st.State, st.Mode, source)
	if st.Detail != "" {
		fmt.Fprintf(w, "  %s\n", st.Detail)
	}
	u := st.Uplink
	fmt.Fprintf(w, "uplink %s: %s\n", orDash(u.Interface), u.State)
	for _, f := range []struct {
		name string
		s    *policy.FamilyStatus
	}{{"ipv4", u.IPv4}, {"ipv6", u.IPv6}} {
		if f.s == nil {
			continue
		}
		line := "usable"
		switch {
		case !f.s.Usable:
			line = "not usable: " + f.s.Reason
		case f.s.Reason != "":
			line = "assumed usable: " + f.s.Reason
		}
		if f.s.Gateway != "" {
			line += ", gateway " + f.s.Gateway + " (" + f.s.GatewaySource + ")"
		}
		if len(f.s.Addresses) > 0 {
			line += ", address " + strings.Join(f.s.Addresses, " ")
		}
		fmt.Fprintf(w, "  %s: %s\n", f.name, line)
	}
	m := st.Media
	fmt.Fprintf(w, "media: match %s, %d IPv4 and %d IPv6 prefixes, UDP %s, port-only UDP %s\n",
		m.Match, m.IPv4Prefixes, m.IPv6Prefixes, orDash(strings.Join(m.UDPPorts, ",")), orDash(strings.Join(m.PortOnlyUDPPorts, ",")))
	for _, s := range m.Sources {
		fmt.Fprintf(w, "  %s\n", s)
	}
	if st.LastReconcile != nil {
		fmt.Fprintf(w, "last reconcile: %s (%s)\n", st.LastReconcile.Local().Format(time.RFC3339), st.LastTrigger)
	}
	fmt.Fprintf(w, "repairs: %d\n", st.Repairs)
	if r := st.LastRepair; r != nil {
		fmt.Fprintf(w, "last repair: %s (%s)\n", r.At.Local().Format(time.RFC3339), r.Trigger)
		for _, c := range r.Changes {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
	actual := map[string]bool{}
	for _, a := range st.Actual {
		actual[a] = true
	}
	desired := map[string]bool{}
	fmt.Fprintln(w, "rules and routes (desired vs kernel):")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, d := range st.Desired {
		desired[d] = true
		mark := "ok"
		if !actual[d] {
			mark = "MISSING"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", mark, strings.ReplaceAll(d, "\t", " "))
	}
	for _, a := range st.Actual {
		if !desired[a] {
			fmt.Fprintf(tw, "  EXTRA\t%s\n", strings.ReplaceAll(a, "\t", " "))
		}
	}
	_ = tw.Flush()
	if len(st.Pending) > 0 {
		fmt.Fprintln(w, "pending:")
		for _, p := range st.Pending {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", st.LastError)
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}

func newPolicyCheckCmd() *cobra.Command {
	var (
		path, from, iif, mark string
		udp, tcp, sport       uint16
	)
	cmd := &cobra.Command{
		Use:   "check ADDR",
		Short: "Show which uplink the kernel picks for a flow, with the selectors that matter",
		Long: `Ask the kernel how it routes a flow to ADDR, passing the protocol, ports and
mark that policy rules can match on. A plain 'ip route get ADDR' carries
none of them: with match: udp it shows the VPN for media that actually goes
direct. Use --from and --iif for a LAN client's flow (forwarded), nothing
for a local socket, --mark for mediaedge's own marked sockets.`,
		Example: `  mediaedge policy check 52.112.0.10 --udp 3478 --from 10.20.0.10 --iif lan0
  mediaedge policy check 192.0.2.80 --mark
  mediaedge policy check 10.99.0.1 --mark=0x4d45`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst, err := netip.ParseAddr(args[0])
			if err != nil {
				return fmt.Errorf("policy check: %q is not an IP address", args[0])
			}
			q := policy.CheckQuery{Dst: dst, Iif: iif, Sport: sport}
			if from != "" {
				if q.Src, err = netip.ParseAddr(from); err != nil {
					return fmt.Errorf("policy check: --from %q is not an IP address", from)
				}
			}
			switch {
			case udp != 0 && tcp != 0:
				return errors.New("policy check: give --udp or --tcp, not both")
			case udp != 0:
				q.Proto, q.Dport = unix.IPPROTO_UDP, udp
			case tcp != 0:
				q.Proto, q.Dport = unix.IPPROTO_TCP, tcp
			}
			// The configuration is optional: it names the uplink and the
			// mark. A missing default file is fine.
			var cfg *policy.Config
			if c, err := loadPolicy(path, io.Discard); err == nil {
				cfg = &c
			} else if cmd.Flags().Changed("config") {
				return err
			}
			if cmd.Flags().Changed("mark") {
				if mark == "config" {
					if cfg == nil || cfg.Mark == 0 {
						return errors.New("policy check: --mark needs a value, or a configuration with policy.mark set")
					}
					q.Mark = uint32(cfg.Mark)
				} else {
					v, err := strconv.ParseUint(mark, 0, 32)
					if err != nil {
						return fmt.Errorf("policy check: --mark %q is not a 32-bit mark", mark)
					}
					q.Mark = uint32(v)
				}
			}
			res, err := policy.Check(q)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "flow:   %s\n", q)
			fmt.Fprintf(out, "kernel: %s\n", res)
			fmt.Fprintf(out, "path:   %s\n", pathOf(q, res, cfg))
			if q.Proto == 0 && cfg != nil && (cfg.Match == policy.MatchUDP || len(cfg.Media.PortOnlyUDPPorts) > 0) {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: media rules match UDP ports; pass --udp PORT to see the path media takes")
			}
			return nil
		},
	}
	configFlag(cmd, &path, "configuration file naming the uplink and the mark (optional)")
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "source address of a forwarded flow (a LAN client)")
	f.StringVar(&iif, "iif", "", "interface a forwarded flow arrives on (needs --from)")
	f.Uint16Var(&udp, "udp", 0, "UDP destination port")
	f.Uint16Var(&tcp, "tcp", 0, "TCP destination port")
	f.Uint16Var(&sport, "sport", 0, "source port")
	f.StringVar(&mark, "mark", "", "socket mark: --mark for the configuration's policy.mark, or --mark=0x4d45")
	f.Lookup("mark").NoOptDefVal = "config"
	return cmd
}

// pathOf names the path a lookup result stands for.
func pathOf(q policy.CheckQuery, r policy.CheckResult, cfg *policy.Config) string {
	switch {
	case r.Refused != "" && q.Iif != "":
		return "refused: an unreachable route (on_uplink_down: fail_closed while the uplink is down), " +
			"forwarding off, or the reverse-path filter"
	case r.Refused != "":
		return "refused: an unreachable route (on_uplink_down: fail_closed while the uplink is down)"
	case r.Type != "unicast":
		return r.Type
	case cfg != nil && r.Dev == cfg.Uplink.Interface:
		return "direct, through the uplink " + r.Dev
	case cfg != nil && cfg.Uplink.Interface != "":
		return "not the uplink: " + r.Dev + " (the VPN or another link)"
	}
	return "dev " + r.Dev
}

func newPolicyImportCmd() *cobra.Command {
	var out, version, source string
	cmd := &cobra.Command{
		Use:   "import-m365 FILE",
		Short: "Turn Microsoft's 365 endpoints JSON into a media file for policy.media.file",
		Long: `Read the JSON of Microsoft's 365 IP and URL web service (the endpoints list;
FILE, or - for stdin) and select the media sets: category Optimize with UDP
ports in 3478-3481 (the Exchange and SharePoint Optimize sets are not
media). Write them as a media file (stdout, or --out, replaced atomically)
for policy.media.file; the daemon reads it on start and on every reload.
The selected and skipped sets are listed on stderr.

Fetch the list with, for example:
  curl -fsS "https://endpoints.office.com/endpoints/Worldwide?ClientRequestId=$(uuidgen)" -o endpoints.json
and its version from .../version/Worldwide (check at most hourly).`,
		Example: `  mediaedge policy import-m365 endpoints.json -o /var/lib/mediaedge/m365-media.json --version 2026081400
  curl -fsS "https://endpoints.office.com/endpoints/Worldwide?ClientRequestId=$(uuidgen)" | mediaedge policy import-m365 -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				data []byte
				err  error
			)
			if args[0] == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 32<<20))
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("import-m365: %w", err)
			}
			f, rep, err := policy.ImportM365(data, policy.M365Options{Source: source, Version: version})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			stderr := cmd.ErrOrStderr()
			for _, s := range rep.Selected {
				fmt.Fprintf(stderr, "selected: set %s\n", s)
			}
			for _, s := range rep.Skipped {
				fmt.Fprintf(stderr, "skipped:  set %s\n", s)
			}
			b, err := f.Marshal()
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := writeAtomic(out, b); err != nil {
				return fmt.Errorf("import-m365: %w", err)
			}
			fmt.Fprintf(stderr, "wrote %s: %d prefixes, UDP %s; reload the daemon (systemctl reload mediaedge) to use it\n",
				out, len(f.Prefixes), strings.Join(f.UDPPorts, ","))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "media file to write (default: stdout)")
	cmd.Flags().StringVar(&version, "version", "", "the list's version from the web service (recorded in the file)")
	cmd.Flags().StringVar(&source, "source", policy.M365Source, "where the list came from (recorded in the file)")
	return cmd
}

// writeAtomic replaces path with data: a reader (the daemon on reload)
// sees the old file or the new one, never half of it.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newPolicyPresetsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "presets",
		Short: "List the built-in media sets with their sources and dates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			for _, p := range policy.Presets() {
				var ports []string
				for _, r := range p.UDPPorts {
					ports = append(ports, r.String())
				}
				var only []string
				for _, r := range p.PortOnlyUDPPorts {
					only = append(only, r.String())
				}
				fmt.Fprintf(w, "%s: %s\n", p.Name, p.Service)
				fmt.Fprintf(w, "  prefixes:  %d", len(p.Prefixes))
				for _, x := range p.Prefixes {
					fmt.Fprintf(w, " %s", x)
				}
				fmt.Fprintf(w, "\n  udp ports: %s\n", orDash(strings.Join(ports, ",")))
				if len(only) > 0 {
					fmt.Fprintf(w, "  port-only: %s\n", strings.Join(only, ","))
				}
				fmt.Fprintf(w, "  source:    %s (%s)\n  note:      %s\n", p.Source, p.Published, p.Note)
			}
			return nil
		},
	}
}
