package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/policy"
)

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
