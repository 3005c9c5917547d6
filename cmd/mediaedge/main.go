// Command mediaedge is the media edge daemon and its command-line tools: a
// TURN relay, an SRTP re-keying gateway and split-tunnel routing for
// enterprise Linux edges.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/control"
)

// exitError carries a process exit code up to main without printing twice.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := newRootCmd(os.Stdout, os.Stderr)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "mediaedge:", msg)
	}
	os.Exit(code)
}

// globals are the flags every command that talks to a running daemon uses.
type globals struct {
	control   string
	tokenFile string
}

// client returns a control API client for the running daemon.
func (g *globals) client() (*control.Client, error) {
	addr := g.control
	if addr == "" {
		addr = control.DefaultSocket()
	}
	token := ""
	if g.tokenFile != "" {
		b, err := config.ReadSecretFile(g.tokenFile)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	return control.NewClient(addr, token), nil
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "mediaedge",
		Short: "Media edge daemon: TURN relay, SRTP re-keying gateway, split-tunnel routing",
		Long: `mediaedge runs at an enterprise's Linux edge between internal clients and
cloud meeting services. It relays media with TURN, re-keys SRTP so that
internal keys never leave the enterprise, and keeps media off a full-tunnel
VPN with policy routing.

Run the daemon with 'mediaedge run'; the other commands inspect its
configuration or talk to the running daemon over its control API.`,
		Example: `  mediaedge run --config /etc/mediaedge/mediaedge.yaml
  mediaedge config check /etc/mediaedge/mediaedge.yaml
  mediaedge version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.control, "control", "",
		"control API of the running daemon: a unix socket path or host:port (default: the runtime directory's socket)")
	root.PersistentFlags().StringVar(&g.tokenFile, "token-file", "",
		"file holding the bearer token for a TCP control API")
	root.AddCommand(
		newRunCmd(),
		newStatusCmd(g),
		newDrainCmd(g),
		newConfigCmd(),
		newVersionCmd(),
		newTurnCmd(g),
		newSessionCmd(g),
		newPolicyCmd(g),
		newBenchCmd(g),
	)
	root.AddCommand(newManCmd(root))
	strictTree(root)
	return root
}
