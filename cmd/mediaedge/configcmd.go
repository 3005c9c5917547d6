package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check a configuration file, print the embedded default, import a coturn configuration",
		Example: `  mediaedge config check /etc/mediaedge/mediaedge.yaml
  mediaedge config default > mediaedge.yaml`,
	}
	var skipSecrets bool
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file and print every problem with its key path and line",
		Long: `Validate FILE as 'mediaedge run --config FILE' would: YAML syntax, unknown
keys, wrong types, out-of-range values, and the secret files it references
(existence and permissions). Every problem is printed with its key path and
line; the exit status is 1 when there is any.`,
		Example: "  mediaedge config check /etc/mediaedge/mediaedge.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := daemon.CheckFile(args[0], config.Options{SkipSecrets: skipSecrets})
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n", args[0])
				return nil
			}
			var ps config.Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], p)
				}
				return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", args[0], len(ps))}
			}
			return &exitError{code: 1, err: err}
		},
	}
	check.Flags().BoolVar(&skipSecrets, "skip-secrets", false, "do not read the secret files the configuration references")
	def := &cobra.Command{
		Use:     "default",
		Short:   "Print the embedded default configuration, commented",
		Example: "  mediaedge config default > /etc/mediaedge/mediaedge.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), daemon.DefaultYAML())
			return err
		},
	}
	cmd.AddCommand(check, def, newImportCoturnCmd())
	return cmd
}
