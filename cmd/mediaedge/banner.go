package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/control"
)

// trialPasswordFile is where run keeps the generated TURN password for the
// commands the banner suggests (mode 0600 beside the control socket,
// removed on exit), so that they run as printed.
func trialPasswordFile(cfg daemon.Config, user string) string {
	return filepath.Join(filepath.Dir(cfg.Control.SocketPath()), "turn-"+user+".password")
}

// writeTrialPassword writes the generated password for the banner's
// commands and returns a function removing it.
func writeTrialPassword(path, password string) (func(), error) {
	if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
		return func() {}, err
	}
	return func() { _ = os.Remove(path) }, nil
}

// printBanner writes the few lines an operator needs once the daemon is
// ready, after every start-up log line: the trial credentials, where the
// control socket is, and commands to try (they run as printed; the
// docs-examples test runs them). The password appears here and nowhere
// else.
func printBanner(w io.Writer, cfg daemon.Config, user, password, passwordFile, metricsAddr string) {
	sock := cfg.Control.SocketPath()
	ctl := ""
	if sock != control.DefaultSocket() {
		ctl = " --control " + sock
	}
	source := cfg.Path
	if cfg.Trial {
		source = "the embedded trial configuration"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nmediaedge is ready (%s); Ctrl-C stops it.\n", source)
	if user != "" && cfg.Relay.Enabled {
		fmt.Fprintf(&b, "  TURN user       %s / %s on %s\n", user, password, turnURIs(cfg))
		if passwordFile != "" {
			fmt.Fprintf(&b, "  password file   %s (removed on exit)\n", passwordFile)
		}
	}
	fmt.Fprintf(&b, "  control socket  %s\n", sock)
	if metricsAddr != "" {
		fmt.Fprintf(&b, "  metrics         http://%s/metrics\n", metricsAddr)
	}
	if cfg.Trial && cfg.Relay.Enabled {
		fmt.Fprintf(&b, "  trial only      the relay admits loopback peers (%s); with --config it refuses them unless relay.allowed_peers lists them\n",
			strings.Join(daemon.TrialPeers, ", "))
	}
	b.WriteString("Try, in another terminal:\n")
	if user != "" && passwordFile != "" && cfg.Relay.Enabled && len(cfg.Relay.Listeners) > 0 && cfg.Relay.Listeners[0].Transport == "udp" {
		fmt.Fprintf(&b, "  mediaedge bench turn --server %s --user %s --password-file %s --count 500\n",
			cfg.Relay.Listeners[0].Addr, user, passwordFile)
	}
	if cfg.Relay.Enabled {
		fmt.Fprintf(&b, "  mediaedge%s turn allocations\n", ctl)
	}
	if cfg.Gateway.Enabled {
		fmt.Fprintf(&b, "  mediaedge%s session list\n", ctl)
	}
	if cfg.Policy.Enabled {
		fmt.Fprintf(&b, "  mediaedge%s policy status\n", ctl)
	}
	if cfg.Trial {
		b.WriteString("  mediaedge config default > mediaedge.yaml\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// turnURIs lists the relay's listeners as TURN URIs.
func turnURIs(cfg daemon.Config) string {
	var uris []string
	for _, l := range cfg.Relay.Listeners {
		switch l.Transport {
		case "udp":
			uris = append(uris, "turn:"+l.Addr.String())
		case "tcp":
			uris = append(uris, "turn:"+l.Addr.String()+"?transport=tcp")
		case "tls":
			uris = append(uris, "turns:"+l.Addr.String()+"?transport=tcp")
		}
	}
	return strings.Join(uris, " ")
}
