package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/policy"
)

func newPolicyImportCmd() *cobra.Command {
	var out, version, source string
	cmd := &cobra.Command{
		Use:   "import-m365 FILE",
		Short: "Turn Microsoft's 365 endpoints JSON into a media file for policy.media.file",
		Long: `Read the JSON of Microsoft's 365 IP and URL web service (the endpoints list;
FILE, or - for stdin) and select the media sets: category Optimize with UDP
ports in 3478-3481 (the Exchange and SharePoint Optimize sets are not
media). Write them as a media file (stdout, or --out, replaced atomically)
for policy.media.file; the daemon reads it on start and on every reload.
The selected and skipped sets are listed on stderr.

Fetch the list with, for example:
  curl -fsS "https://endpoints.office.com/endpoints/Worldwide?ClientRequestId=$(uuidgen)" -o endpoints.json
and its version from .../version/Worldwide (check at most hourly).`,
		Example: `  mediaedge policy import-m365 endpoints.json -o /var/lib/mediaedge/m365-media.json --version 2026081400
  curl -fsS "https://endpoints.office.com/endpoints/Worldwide?ClientRequestId=$(uuidgen)" | mediaedge policy import-m365 -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				data []byte
				err  error
			)
			if args[0] == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 32<<20))
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("import-m365: %w", err)
			}
			f, rep, err := policy.ImportM365(data, policy.M365Options{Source: source, Version: version})
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			stderr := cmd.ErrOrStderr()
			for _, s := range rep.Selected {
				fmt.Fprintf(stderr, "selected: set %s\n", s)
			}
			for _, s := range rep.Skipped {
				fmt.Fprintf(stderr, "skipped:  set %s\n", s)
			}
			b, err := f.Marshal()
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := writeAtomic(out, b); err != nil {
				return fmt.Errorf("import-m365: %w", err)
			}
			fmt.Fprintf(stderr, "wrote %s: %d prefixes, UDP %s; reload the daemon (systemctl reload mediaedge) to use it\n",
				out, len(f.Prefixes), strings.Join(f.UDPPorts, ","))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "media file to write (default: stdout)")
	cmd.Flags().StringVar(&version, "version", "", "the list's version from the web service (recorded in the file)")
	cmd.Flags().StringVar(&source, "source", policy.M365Source, "where the list came from (recorded in the file)")
	return cmd
}

// writeAtomic replaces path with data: a reader (the daemon on reload)
// sees the old file or the new one, never half of it.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
