package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Plan, apply and inspect split-tunnel routing",
		Long: `Split-tunnel policy routing keeps real-time media off a full-tunnel VPN: media
leaves through the direct uplink, everything else keeps using the VPN.

plan, apply, flush and check talk to the kernel directly; status asks the
running daemon and falls back to the kernel. docs/policy.md explains the
rule set.`,
		Example: `  mediaedge policy plan --config /etc/mediaedge/mediaedge.yaml
  mediaedge policy check 52.112.0.10 --udp 3478 --from 10.20.0.10 --iif lan0
  mediaedge policy import-m365 endpoints.json -o /var/lib/mediaedge/m365-media.json`,
	}
	cmd.AddCommand(newPolicyPlanCmd(), newPolicyApplyCmd(), newPolicyFlushCmd(), newPolicyStatusCmd(g),
		newPolicyCheckCmd(), newPolicyImportCmd(), newPolicyPresetsCmd())
	return cmd
}

// loadPolicy reads the policy section of the configuration file: path, or
// without --config the installed file, else the embedded default (said on
// stderr). Problems are printed one per line with their key path; the error
// then carries exit status 2, as for `mediaedge run`.
func loadPolicy(path string, stderr io.Writer) (policy.Config, error) {
	cfg, name, err := loadCLIConfig(path, config.Options{SkipSecrets: true}, stderr)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				fmt.Fprintf(stderr, "%s: %s\n", name, p)
			}
			return policy.Config{}, &exitError{code: 2, err: fmt.Errorf("%s: %d problem(s)", name, len(ps))}
		}
		return policy.Config{}, &exitError{code: 2, err: err}
	}
	return cfg.Policy, nil
}

func configFlag(cmd *cobra.Command, path *string, help string) {
	cmd.Flags().StringVarP(path, "config", "c", "", help+" (default: "+installedConfigPath+" if it exists, else the embedded default)")
}

func printLines(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// permissionHint adds what to do to a refusal for lack of privileges.
func permissionHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (changing routing needs root or CAP_NET_ADMIN)", err)
	}
	return err
}

// summarize prints the uplink state and the warnings of a one-shot
// command. The status's error is left out when err, which main prints,
// says it already.
func summarize(w io.Writer, st policy.Status, n int, what string, err error) {
	fmt.Fprintf(w, "uplink %s: %s\n", orDash(st.Uplink.Interface), st.Uplink.State)
	for _, f := range []struct {
		name string
		s    *policy.FamilyStatus
	}{{"ipv4", st.Uplink.IPv4}, {"ipv6", st.Uplink.IPv6}} {
		if f.s != nil && !f.s.Usable {
			fmt.Fprintf(w, "  %s not usable: %s\n", f.name, f.s.Reason)
		}
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if st.LastError != "" && (err == nil || !strings.Contains(err.Error(), st.LastError)) {
		fmt.Fprintf(w, "error: %s\n", st.LastError)
	}
	fmt.Fprintf(w, "%d %s\n", n, what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
