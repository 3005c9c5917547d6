package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/mediaedge/mediaedge/internal/buildinfo"
)

// newManCmd is the hidden command that writes the manual pages: one for
// mediaedge and one per command, generated from the command tree so that
// they say what --help says. make deb runs it.
func newManCmd(root *cobra.Command) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Short:  "Write the manual pages (mediaedge.1 and one per command) into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			hdr := &doc.GenManHeader{
				Title:   "MEDIAEDGE",
				Section: "1",
				Source:  "mediaedge " + buildinfo.Get().Version,
				Manual:  "mediaedge manual",
			}
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, hdr, dir); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the pages into (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
