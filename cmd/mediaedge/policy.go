package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newPolicyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "policy",
		Short:  "Plan, apply and inspect split-tunnel routing",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("policy: not implemented yet")
		},
	}
}
