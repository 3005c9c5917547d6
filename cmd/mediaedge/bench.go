package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newBenchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "bench",
		Short:  "Measure a media gateway or TURN server with verified packets",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("bench: not implemented yet")
		},
	}
}
