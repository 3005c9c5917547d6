package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/policy"
	"github.com/mediaedge/mediaedge/relay"
)

// statusView is GET /v1/status as the CLI reads it: the components stay
// raw until each is decoded into its own shape.
type statusView struct {
	daemon.StatusReport
	Components map[string]json.RawMessage `json:"components"`
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon at a glance: version, uptime, last reload, components, drain",
		Long: `Show the running daemon on one screen: version and uptime, the
configuration file and the last reload (when and whether it applied),
readiness, and each component's state with its allocations, sessions and
uplink. --json prints GET /v1/status as the daemon answers it.`,
		Example: `  mediaedge status
  mediaedge status --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			defer c.Close()
			var raw json.RawMessage
			if err := c.Do(cmd.Context(), "GET", "/v1/status", nil, &raw); err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(append(raw, '\n'))
				return err
			}
			var st statusView
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("status: decoding the daemon's answer: %w", err)
			}
			printDaemonStatus(cmd.OutOrStdout(), &st, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the daemon's JSON status")
	return cmd
}

// printDaemonStatus writes the one-screen summary.
func printDaemonStatus(w io.Writer, st *statusView, now time.Time) {
	ver := st.Version
	if st.Commit != "" {
		ver += " (" + shortCommit(st.Commit) + ")"
	}
	fmt.Fprintf(w, "mediaedge %s, %s\n", ver, st.GoVersion)
	fmt.Fprintf(w, "%-12s %s (since %s)\n", "uptime", roundDur(time.Duration(st.UptimeSeconds*float64(time.Second))),
		st.StartedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "%-12s %s\n", "config", st.ConfigFile)
	switch {
	case st.LastReload == nil:
		fmt.Fprintf(w, "%-12s none since start\n", "last reload")
	case st.ReloadError != "":
		fmt.Fprintf(w, "%-12s %s (%s ago): FAILED, running the previous configuration: %s\n", "last reload",
			st.LastReload.UTC().Format(time.RFC3339), roundDur(now.Sub(*st.LastReload)), st.ReloadError)
	default:
		fmt.Fprintf(w, "%-12s %s (%s ago): applied\n", "last reload",
			st.LastReload.UTC().Format(time.RFC3339), roundDur(now.Sub(*st.LastReload)))
	}
	if d := st.Drain; d != nil {
		state := fmt.Sprintf("draining since %s, stops by %s (in %s)", d.Since.UTC().Format(time.RFC3339),
			d.Deadline.UTC().Format(time.RFC3339), roundDur(max(d.Deadline.Sub(now), 0)))
		if d.Done {
			state = "drain done (" + d.Reason + "), stopping"
		}
		fmt.Fprintf(w, "%-12s %s: %d allocation(s), %d session(s) left\n", "drain", state, d.Allocations, d.Sessions)
	}
	for _, name := range []string{"relay", "gateway", "policy"} {
		raw, ok := st.Components[name]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%-12s %s\n", name, componentLine(name, raw))
	}
}

// componentLine summarises one component's status.
func componentLine(name string, raw json.RawMessage) string {
	var line string
	switch name {
	case "relay":
		var r relay.Status
		if json.Unmarshal(raw, &r) != nil {
			return "(unreadable status)"
		}
		line = r.State
		if r.State != "disabled" {
			line += fmt.Sprintf(", %d allocation(s) of %d user(s)", r.Allocations, r.Users)
			if r.Draining {
				line += ", refusing new allocations (draining)"
			}
			if len(r.Listeners) > 0 {
				line += "; " + strings.Join(r.Listeners, ", ")
			}
		}
		return withDetail(line, r.Detail)
	case "gateway":
		var gs gateway.Status
		if json.Unmarshal(raw, &gs) != nil {
			return "(unreadable status)"
		}
		line = gs.State
		if gs.State != "disabled" {
			line += fmt.Sprintf(", %d of %d session(s), %d worker(s)", gs.Sessions, gs.MaxSessions, gs.Workers)
			if gs.Draining {
				line += ", refusing new sessions (draining)"
			}
		}
		return withDetail(line, gs.Detail)
	case "policy":
		var ps policy.Status
		if json.Unmarshal(raw, &ps) != nil {
			return "(unreadable status)"
		}
		line = ps.State
		if ps.State != "disabled" {
			line += fmt.Sprintf(", mode %s, uplink %s %s, %d rule(s)", ps.Mode, orDash(ps.Uplink.Interface),
				orDash(ps.Uplink.State), len(ps.Actual))
			if len(ps.Pending) > 0 {
				line += fmt.Sprintf(", %d change(s) pending", len(ps.Pending))
			}
			if ps.LastError != "" {
				line += ", last error: " + ps.LastError
			}
		}
		return withDetail(line, ps.Detail)
	}
	return string(raw)
}

func withDetail(line, detail string) string {
	if detail == "" {
		return line
	}
	return line + " (" + detail + ")"
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// roundDur rounds d for people: seconds under an hour, minutes above.
func roundDur(d time.Duration) string {
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
