package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/gateway"
)

func newSessionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Create, inspect, re-key and delete SRTP gateway sessions",
		Long: `Manage the sessions of the running SRTP re-keying gateway over the control
API. A session has an internal leg (enterprise endpoints) and a cloud leg
(the provider's media relays); each leg takes the peer's a=crypto line and
answers with the gateway's own, which the peer decrypts with. Keys are
printed by create and rekey only.`,
		Example: `  mediaedge session create --internal-crypto "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz" \
      --cloud-crypto "a=crypto:1 AEAD_AES_128_GCM inline:Ym9uam91ciB0b3V0IGxlIG1vbmRlISAxMjM0NQ==" --cloud-remote 198.51.100.20:3480 --rtcp-mux
  mediaedge session list
  mediaedge session show 3f2a9c01d4e5b677
  mediaedge session rekey 3f2a9c01d4e5b677 --leg cloud
  mediaedge session delete 3f2a9c01d4e5b677`,
	}
	cmd.AddCommand(newSessionCreateCmd(g), newSessionListCmd(g), newSessionShowCmd(g), newSessionUpdateCmd(g),
		newSessionRekeyCmd(g), newSessionDeleteCmd(g), newSessionEventsCmd(g))
	return cmd
}

// sessionLegFlags are the flags describing one leg of a new session.
type sessionLegFlags struct {
	remote, remoteRTCP, crypto, suite string
	keying, setup, fingerprint        string
	lifetime                          uint64
	mki, mux, noICE                   bool
}

func (lf *sessionLegFlags) register(cmd *cobra.Command, leg string) {
	f := cmd.Flags()
	f.StringVar(&lf.crypto, leg+"-crypto", "", "the "+leg+" peer's a=crypto line (its own key); empty: plain RTP, if the leg allows it")
	f.StringVar(&lf.remote, leg+"-remote", "", "the "+leg+" peer's RTP address ip:port; empty: latched from its first authenticated packet")
	f.StringVar(&lf.remoteRTCP, leg+"-remote-rtcp", "", "the "+leg+" peer's RTCP address without rtcp-mux (default: RTP port + 1, or latched)")
	f.StringVar(&lf.suite, leg+"-suite", "", "suite of the gateway's own key on the "+leg+" leg (default: the peer's)")
	f.Uint64Var(&lf.lifetime, leg+"-key-lifetime", 0, "packet budget of the gateway's key on the "+leg+" leg (default: the configuration's)")
	f.BoolVar(&lf.mki, leg+"-mki", false, "give the gateway's "+leg+" keys an MKI")
	f.BoolVar(&lf.mux, leg+"-rtcp-mux", false, "multiplex RTCP on the "+leg+" leg's RTP port (RFC 5761)")
	f.StringVar(&lf.keying, leg+"-keying", "", "keying of the "+leg+" leg: sdes (a=crypto, the default) or dtls (DTLS-SRTP, WebRTC)")
	f.StringVar(&lf.setup, leg+"-setup", "", "the "+leg+" peer's a=setup on a DTLS leg: active, passive or actpass")
	f.StringVar(&lf.fingerprint, leg+"-fingerprint", "", "the "+leg+" peer's a=fingerprint on a DTLS leg (\"sha-256 AB:CD:...\")")
	f.BoolVar(&lf.noICE, leg+"-no-ice", false, "no ICE-lite on the "+leg+" DTLS leg (a DTLS-SRTP peer that does not do ICE)")
}

func (lf *sessionLegFlags) request(mux bool) gateway.LegRequest {
	return gateway.LegRequest{Remote: lf.remote, RemoteRTCP: lf.remoteRTCP, RTCPMux: lf.mux || mux, Crypto: lf.crypto,
		Suite: lf.suite, KeyLifetime: lf.lifetime, MKI: lf.mki, Keying: lf.keying, Setup: lf.setup, Fingerprint: lf.fingerprint, NoICE: lf.noICE}
}

// printDTLS prints what the SDP toward a DTLS leg's peer needs.
func printDTLS(out io.Writer, d *gateway.DTLSInfo) {
	fmt.Fprintf(out, "  a=fingerprint:%s\n  a=setup:%s\n", d.Fingerprint, d.Setup)
	if d.ICE != nil {
		fmt.Fprintf(out, "  a=ice-lite\n  a=ice-ufrag:%s\n", d.ICE.Ufrag)
		if d.ICE.Pwd != "" {
			fmt.Fprintf(out, "  a=ice-pwd:%s\n", d.ICE.Pwd)
		}
		for _, c := range d.ICE.Candidates {
			fmt.Fprintf(out, "  a=candidate:%s\n", c)
		}
	}
	fmt.Fprintf(out, "  dtls: %s\n", d.State)
}

func newSessionCreateCmd(g *globals) *cobra.Command {
	var (
		id          string
		internal    sessionLegFlags
		cloud       sessionLegFlags
		mux, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a session and print each leg's local address and the gateway's a=crypto line",
		Long: `Create a session. For each leg give the peer's a=crypto line (the key the
peer encrypts with) and, if known, its address. The answer lists, per leg,
where the peer sends media (local, local_rtcp) and the gateway's own
a=crypto line for the peer: put both into the SDP toward that peer. The two
legs never share a key.

A leg toward a WebRTC endpoint takes --<leg>-keying dtls with the peer's
a=setup and a=fingerprint instead of a=crypto: the answer then lists the
gateway's a=fingerprint, a=setup and ICE-lite credentials for that peer's
SDP, and the keys come from the DTLS handshake (docs/gateway.md, WebRTC).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req := gateway.CreateRequest{ID: id, Internal: internal.request(mux), Cloud: cloud.request(mux)}
			var s gateway.SessionInfo
			if err := c.Do(cmd.Context(), "POST", "/v1/sessions", req, &s); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return sessionJSON(out, s)
			}
			fmt.Fprintf(out, "session %s\n", s.ID)
			for _, l := range []struct {
				name string
				leg  *gateway.LegInfo
			}{{"internal", &s.Internal}, {"cloud", &s.Cloud}} {
				fmt.Fprintf(out, "%s:\n  local:      %s\n  local_rtcp: %s\n", l.name, l.leg.Local, l.leg.LocalRTCP)
				switch {
				case l.leg.DTLS != nil:
					printDTLS(out, l.leg.DTLS)
				case l.leg.Crypto != "":
					fmt.Fprintf(out, "  %s\n", l.leg.Crypto)
				default:
					fmt.Fprintln(out, "  plain RTP (no a=crypto)")
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "session id (default: generated)")
	cmd.Flags().BoolVar(&mux, "rtcp-mux", false, "rtcp-mux on both legs")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the JSON answer")
	internal.register(cmd, "internal")
	cloud.register(cmd, "cloud")
	return cmd
}

func newSessionListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the sessions (without keys)",
		Long: `List the sessions, oldest first, one a line: the id, the age, the keying
of the internal and the cloud leg (KEYING: sdes, dtls or plain, as
internal/cloud), each leg's local and remote address, the packets passed
each way, the packets dropped, the time since the last packet and, for a
session of an ng call, the call (call-id, m= line, from-tag/to-tag).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var list gateway.ListResponse
			if err := c.Do(cmd.Context(), "GET", "/v1/sessions", nil, &list); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return sessionJSON(out, list)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tAGE\tKEYING\tINTERNAL LOCAL\tINTERNAL REMOTE\tCLOUD LOCAL\tCLOUD REMOTE\tPKTS IN→CLOUD\tPKTS CLOUD→IN\tDROPS\tLAST PACKET\tNG CALL")
			for _, s := range list.Sessions {
				drops := s.Counters.AuthFailures + s.Counters.Replays + s.Counters.Malformed + s.Counters.WrongSource +
					s.Counters.KeyExpired + s.Counters.SSRCLimit + s.Counters.NoRemote + s.Counters.KeyExhausted + s.Counters.SendErrors +
					s.Counters.NoKey + s.Counters.DTLSDropped
				ngCall := "-"
				if s.NG != nil {
					ngCall = fmt.Sprintf("%s m=%d %s (%s/%s)", s.NG.CallID, s.NG.Media, s.NG.Type, s.NG.FromTag, s.NG.ToTag)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.ID, sessionAge(&s.Created),
					sessionKeying(s.Internal.Keying)+"/"+sessionKeying(s.Cloud.Keying),
					s.Internal.Local, sessionDash(s.Internal.Remote), s.Cloud.Local, sessionDash(s.Cloud.Remote),
					s.Internal.Counters.PacketsIn, s.Cloud.Counters.PacketsIn, drops, sessionAge(s.LastPacket), ngCall)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d session(s)\n", len(list.Sessions))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSessionShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a session's legs, keys epochs, streams and counters as JSON (without keys)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var s gateway.SessionInfo
			if err := c.Do(cmd.Context(), "GET", "/v1/sessions/"+url.PathEscape(args[0]), nil, &s); err != nil {
				return err
			}
			return sessionJSON(cmd.OutOrStdout(), s)
		},
	}
}

func newSessionUpdateCmd(g *globals) *cobra.Command {
	var internal, cloud sessionLegFlags
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a leg's remote address or install the peer's new key",
		Long: `Change a leg's remote address, or install the peer's new a=crypto line after
it re-keyed; the peer's previous key stays valid for the leg's rekey_grace.`,
		Example: `  mediaedge session update 3f2a9c01d4e5b677 --cloud-remote 198.51.100.21:3480
  mediaedge session update 3f2a9c01d4e5b677 --internal-crypto "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:bmV3IGludGVybmFsIGtleSBhbmQgc2FsdCEhISEh"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var req gateway.UpdateRequest
			if u := internal.update(); u != nil {
				req.Internal = u
			}
			if u := cloud.update(); u != nil {
				req.Cloud = u
			}
			if req.Internal == nil && req.Cloud == nil {
				return errors.New("session update: nothing to change (--internal-remote, --cloud-crypto, ...)")
			}
			var s gateway.SessionInfo
			if err := c.Do(cmd.Context(), "PATCH", "/v1/sessions/"+url.PathEscape(args[0]), req, &s); err != nil {
				return err
			}
			return sessionJSON(cmd.OutOrStdout(), s)
		},
	}
	for _, l := range []struct {
		lf   *sessionLegFlags
		name string
	}{{&internal, "internal"}, {&cloud, "cloud"}} {
		f := cmd.Flags()
		f.StringVar(&l.lf.remote, l.name+"-remote", "", "new RTP address of the "+l.name+" peer")
		f.StringVar(&l.lf.remoteRTCP, l.name+"-remote-rtcp", "", "new RTCP address of the "+l.name+" peer")
		f.StringVar(&l.lf.crypto, l.name+"-crypto", "", "the "+l.name+" peer's new a=crypto line")
		f.StringVar(&l.lf.fingerprint, l.name+"-fingerprint", "", "the "+l.name+" peer's new a=fingerprint (DTLS leg: a new handshake)")
		f.StringVar(&l.lf.setup, l.name+"-setup", "", "the "+l.name+" peer's new a=setup (DTLS leg: a new handshake)")
	}
	return cmd
}

func (lf *sessionLegFlags) update() *gateway.LegUpdate {
	if lf.remote == "" && lf.remoteRTCP == "" && lf.crypto == "" && lf.fingerprint == "" && lf.setup == "" {
		return nil
	}
	return &gateway.LegUpdate{Remote: lf.remote, RemoteRTCP: lf.remoteRTCP, Crypto: lf.crypto,
		Fingerprint: lf.fingerprint, Setup: lf.setup}
}

func newSessionRekeyCmd(g *globals) *cobra.Command {
	var leg string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rekey ID --leg internal|cloud",
		Short: "Give the gateway's outbound direction on one leg a new key and print its a=crypto line",
		Long: `Generate a new key for what the gateway sends on one leg and print its
a=crypto line for the peer on that leg. The gateway encrypts with it from
active_at (the leg's switch_delay after now).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var res gateway.RekeyResult
			if err := c.Do(cmd.Context(), "POST", "/v1/sessions/"+url.PathEscape(args[0])+"/rekey",
				gateway.RekeyRequest{Leg: leg}, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return sessionJSON(out, res)
			}
			fmt.Fprintf(out, "%s\nleg %s, key epoch %d, active at %s\n", res.Crypto, res.Leg, res.KeyEpoch,
				res.ActiveAt.UTC().Format(time.RFC3339Nano))
			return nil
		},
	}
	cmd.Flags().StringVar(&leg, "leg", "", "internal or cloud (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("leg")
	return cmd
}

func newSessionDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID...",
		Short: "End sessions (their ports are released and keys wiped)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var errs []error
			for _, id := range args {
				if err := c.Do(cmd.Context(), "DELETE", "/v1/sessions/"+url.PathEscape(id), nil, nil); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", id, err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", id)
			}
			return errors.Join(errs...)
		},
	}
}

func newSessionEventsCmd(g *globals) *cobra.Command {
	var (
		since  uint64
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the gateway's events as JSON lines (rekeyed events carry the new a=crypto line)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for {
				q := "/v1/gateway/events?since=" + strconv.FormatUint(since, 10)
				if follow {
					q += "&wait=25s"
				}
				var res gateway.EventsResponse
				if err := c.Do(cmd.Context(), "GET", q, nil, &res); err != nil {
					return err
				}
				for _, e := range res.Events {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				since = res.Next
				if !follow {
					return nil
				}
			}
		},
	}
	cmd.Flags().Uint64Var(&since, "since", 0, "print events after this sequence number")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep waiting for new events")
	return cmd
}

func sessionJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sessionKeying names a leg's keying for the list: sdes, dtls or plain.
func sessionKeying(k string) string {
	if k == "" {
		return "plain"
	}
	return k
}

func sessionDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sessionAge formats the time elapsed since t, or "-".
func sessionAge(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return time.Since(*t).Round(time.Second).String()
}
