package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newSessionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "session",
		Short:  "Create, inspect, re-key and delete gateway sessions",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("session: not implemented yet")
		},
	}
}
