package main

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/internal/buildinfo"
)

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version of mediaedge, Go and the protocol libraries",
		Long:    "Print mediaedge's version and commit, the Go version it was built with, and the versions of pion/turn, pion/srtp, netlink and the other libraries that decide its behaviour on the wire.",
		Example: "  mediaedge version\n  mediaedge version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Get()
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			fmt.Fprintf(out, "mediaedge %s\n", info.Version)
			if info.Commit != "" {
				fmt.Fprintf(out, "commit     %s\n", info.Commit)
			}
			fmt.Fprintf(out, "go         %s\n", info.GoVersion)
			libs := make([]string, 0, len(info.Libraries))
			for l := range info.Libraries {
				libs = append(libs, l)
			}
			sort.Strings(libs)
			for _, l := range libs {
				fmt.Fprintf(out, "%-36s %s\n", l, info.Libraries[l])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
