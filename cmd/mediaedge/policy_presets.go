package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/policy"
)

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
