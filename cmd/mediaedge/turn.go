package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newTurnCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "turn",
		Short:  "Manage TURN credentials and inspect relay allocations",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("turn: not implemented yet")
		},
	}
}
