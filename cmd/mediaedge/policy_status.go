package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/policy"
)

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
				fmt.Fprintf(cmd.ErrOrStderr(), "daemon not reachable (%v); showing the kernel's view\n", err)
				cfg, lerr := loadPolicy(path, cmd.ErrOrStderr())
				if lerr != nil {
					return lerr
				}
				rep, perr := policy.Inspect(cmd.Context(), cfg)
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
