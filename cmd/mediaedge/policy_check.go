package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/policy"
)

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
  mediaedge policy check 192.0.2.80 --udp 3478
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
