package main

import (
	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/policy"
)

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
			summarize(cmd.ErrOrStderr(), rep.Status, len(rep.Changes), "change(s) made", err)
			return permissionHint(err)
		},
	}
	configFlag(cmd, &path, "configuration file")
	return cmd
}
