package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/relay"
)

func newTurnCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "turn",
		Short: "Mint TURN credentials, list and end the relay's allocations",
		Example: `  mediaedge turn credentials --user alice --ttl 1h --secret-file turn-secret --json
  mediaedge turn allocations`,
	}
	cmd.AddCommand(newTurnCredentialsCmd(), newTurnAllocationsCmd(g), newTurnKillCmd(g))
	return cmd
}

// iceServer is one entry of a WebRTC RTCConfiguration.iceServers list.
type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username"`
	Credential string   `json:"credential"`
}

func newTurnCredentialsCmd() *cobra.Command {
	var (
		user, secretFile, cfgPath, host string
		uris                            []string
		ttl                             time.Duration
		asJSON                          bool
	)
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "Print TURN REST credentials (coturn use-auth-secret compatible)",
		Long: `Print a time-limited TURN username and password for USER, signed with the
relay's REST shared secret: the first secret of --secret-file, or of the
first relay.auth.secret_files entry of --config. The username is
"<expiry>:<user>" and the password base64(HMAC-SHA1(secret, username)), as
coturn's use-auth-secret expects, so any service holding the secret can mint
the same credentials. With --json the output is a WebRTC iceServers entry.`,
		Example: `  mediaedge turn credentials --user alice --ttl 1h --secret-file /etc/mediaedge/turn-secret
  mediaedge turn credentials --user alice --config /etc/mediaedge/mediaedge.yaml --host turn.example.com --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret, cfg, err := turnSecret(secretFile, cfgPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			now := time.Now()
			u, p, err := relay.MintCredentials(secret, user, ttl, now)
			if err != nil {
				return err
			}
			if len(uris) == 0 && cfg != nil {
				uris = cfg.URIs(host)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(iceServer{URLs: append([]string{}, uris...), Username: u, Credential: p})
			}
			fmt.Fprintf(out, "username: %s\npassword: %s\nexpires:  %s\n", u, p, now.Add(ttl).UTC().Format(time.RFC3339))
			for _, uri := range uris {
				fmt.Fprintf(out, "uri:      %s\n", uri)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "user the credential is for (required)")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the credential is valid")
	f.StringVar(&secretFile, "secret-file", "", "file holding the REST shared secret (first line is used)")
	f.StringVarP(&cfgPath, "config", "c", "", "configuration whose relay.auth.secret_files and listeners are used when --secret-file or --uri are not given (default: /etc/mediaedge/mediaedge.yaml if it exists, else the embedded default)")
	f.StringVar(&host, "host", "", "host name or address clients use, in the URIs derived from the configuration")
	f.StringSliceVar(&uris, "uri", nil, "TURN URI to list (repeatable); default: derived from the configuration's listeners")
	f.BoolVar(&asJSON, "json", false, "print a WebRTC iceServers entry")
	_ = cmd.MarkFlagRequired("user")
	return cmd
}

// turnSecret returns the signing secret and, when it was read, the relay
// configuration.
func turnSecret(secretFile, cfgPath string, stderr io.Writer) ([]byte, *relay.Config, error) {
	var cfg *relay.Config
	c, _, err := loadCLIConfig(cfgPath, config.Options{}, stderr)
	switch {
	case err == nil:
		cfg = &c.Relay
	case secretFile == "" || cfgPath != "":
		// daemon.Load's error names the file already.
		return nil, nil, fmt.Errorf("turn: %w", err)
	}
	var data []byte
	switch {
	case secretFile != "":
		b, err := config.ReadSecretFile(secretFile)
		if err != nil {
			return nil, nil, err
		}
		data = b
	case cfg != nil && len(cfg.Auth.SecretFiles) > 0:
		data = cfg.Auth.SecretFiles[0].Bytes()
	default:
		return nil, nil, errors.New("turn: no REST shared secret: pass --secret-file or configure relay.auth.secret_files")
	}
	secrets, err := relay.ParseSecretFile(data)
	if err != nil {
		return nil, nil, fmt.Errorf("turn: secret file: %w", err)
	}
	return secrets[0], cfg, nil
}

func newTurnAllocationsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "allocations",
		Short:   "List the live allocations of the running relay",
		Example: "  mediaedge turn allocations\n  mediaedge turn allocations --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var list relay.AllocationList
			if err := c.Do(cmd.Context(), "GET", "/v1/relay/allocations", nil, &list); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tCLIENT\tTRANSPORT\tRELAY\tAGE\tCHANNELS\tPKTS OUT\tPKTS IN\tBYTES OUT\tBYTES IN")
			for _, a := range list.Allocations {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s/%s\t%s\t%d\t%d\t%d\t%d\t%d\n", a.ID, a.User, a.Client, a.Transport,
					a.Relay, a.RelayProtocol, (time.Duration(a.AgeSeconds) * time.Second).String(), a.Channels,
					a.PacketsToPeer, a.PacketsToClient, a.BytesToPeer, a.BytesToClient)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d allocation(s)\n", len(list.Allocations))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
