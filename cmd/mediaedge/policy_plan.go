package main

import (
	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/policy"
)

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
			summarize(cmd.ErrOrStderr(), rep.Status, len(rep.Changes), "change(s) to make", err)
			return err
		},
	}
	configFlag(cmd, &path, "configuration file")
	return cmd
}
