package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// flapDown is how long the uplink stays down.
const flapDown = 2 * time.Second

// stepFlap takes wan0 down and up and waits for media to come back on it.
func (s *scenario) stepFlap(ctx context.Context) error {
	k := newChecker(fmt.Sprintf("uplink flap (wan0 down %s, then up): media recovers on the uplink", flapDown))
	defer func() { s.record(k.done()) }()
	edge := s.topo.Edge
	tDown := time.Now()
	if _, err := edge.IP(ctx, "link", "set", ifEdgeWAN, "down"); err != nil {
		k.fail(err)
		return nil
	}
	werr := sleep(ctx, flapDown)
	tUp := time.Now()
	if _, err := edge.IP(context.WithoutCancel(ctx), "link", "set", ifEdgeWAN, "up"); err != nil {
		k.fail(err)
		return err // the edge is broken for every later step
	}
	if werr != nil {
		return werr
	}
	// What happened while it was down (policy on_uplink_down: fallback):
	// media still reached the cloud, through the VPN.
	var during []string
	for _, f := range s.flows() {
		if !f.ToCloud {
			continue
		}
		w := f.Window(tDown.Add(inFlight), tUp)
		during = append(during, fmt.Sprintf("%q from %s", f.Name, sources(w.Sources)))
	}
	k.note("while wan0 was down (on_uplink_down: fallback) the cloud media server got %s", strings.Join(during, "; "))
	last, missing := s.waitRecovered(ctx, tUp, 10*time.Second)
	if len(missing) > 0 {
		k.expect(false, "10 s after wan0 came up, not back (the cloud-bound ones from the uplink address): %s", strings.Join(missing, "; "))
		// The edge's connection tracking for the cloud media server says
		// why a forwarded flow left with the wrong source.
		for _, args := range [][]string{{"-L", "-f", "ipv4", "-p", "udp"}, {"-L", "-f", "ipv6", "-p", "udp"}, {"-S"}} {
			out, err := edge.Exec(ctx, "conntrack", args...)
			if err != nil {
				continue
			}
			k.note("conntrack %s in the edge:\n%s", strings.Join(args, " "), strings.TrimSpace(out))
			for _, l := range strings.Split(out, "\n") {
				if reverseMediaEntry(l) {
					k.note("diagnosis: %q was made by a cloud -> client packet that came through the VPN after the flush; "+
						"the client's media matches its reply direction, which has no NAT, so it leaves %s with its private source "+
						"for as long as the call lasts. The policy's conntrack flush matches only the original destination, "+
						"once: it must match either direction and run again once packets of the old path have drained", strings.Join(strings.Fields(l), " "), ifEdgeWAN)
				}
			}
		}
		return nil
	}
	k.expect(true, "every flow had audio again %s after wan0 came up, the cloud-bound ones from %s and %s",
		last.Sub(tUp).Round(time.Millisecond), EdgeWANAddr, EdgeWANAddr6)
	has4, err4 := tableHas(ctx, edge, "100", netip.MustParsePrefix("52.112.0.0/14"))
	has6, err6 := tableHas(ctx, edge, "100", netip.MustParsePrefix("2603:1063::/38"))
	k.expect(err4 == nil && err6 == nil && has4 && has6,
		"table 100 holds 52.112.0.0/14 and 2603:1063::/38 again (the kernel deleted them with the link, and sent no event for IPv4)")
	// A steady second after the recovery: nothing lost, all direct.
	from := time.Now()
	if err := sleep(ctx, time.Second+inFlight); err != nil {
		return err
	}
	to := time.Now()
	for _, f := range s.flows() {
		w := f.Window(from, to)
		direct := !f.ToCloud || len(w.Sources) == 1 && w.Sources[f.Uplink] > 0
		k.expect(w.Sent > 0 && w.Received == w.Sent && direct,
			"then for 1 s: %s %d/%d frames%s", f.Name, w.Received, w.Sent, viaNote(f, w))
	}
	return nil
}

func viaNote(f *Flow, w Window) string {
	if f.ToCloud {
		return ", from " + sources(w.Sources)
	}
	return ""
}

// stepReload adds a media prefix to the configuration, sends SIGHUP and
// checks that routing changes while the call goes on.
func (s *scenario) stepReload(ctx context.Context) error {
	k := newChecker("SIGHUP with a changed media prefix list applies without dropping the session")
	defer func() { s.record(k.done()) }()
	edge, ns := s.edge, s.topo.Edge
	ap := netip.AddrPortFrom(NewMediaAddr, EchoPort)
	got, err := Probe(s.topo.Client, ap, 10)
	if err != nil {
		k.fail(err)
		return nil
	}
	src := s.echoes[ap].Sources()
	k.expect(got == 10 && src[ConcentratorPublicAddr] == 10,
		"before: client -> %s (not a media prefix yet): %d/10 echoed, seen from %s (through the VPN)", NewMediaAddr, got, sources(src))

	if err := edge.WriteConfig(EdgeConfig{ExtraMediaPrefixes: []netip.Prefix{NewMediaPrefix}}); err != nil {
		k.fail(err)
		return nil
	}
	tR := time.Now()
	if err := edge.Signal(syscall.SIGHUP); err != nil {
		k.fail(err)
		return err
	}
	applied := waitFor(ctx, 5*time.Second, func() bool {
		has, err := tableHas(ctx, ns, "100", NewMediaPrefix)
		return err == nil && has
	})
	k.expect(applied, "policy.media.prefixes += %s, SIGHUP: table 100 has it after %s",
		NewMediaPrefix, time.Since(tR).Round(time.Millisecond))
	// The daemon records the reload once every component has applied it.
	var st DaemonStatus
	reloaded := waitFor(ctx, 5*time.Second, func() bool {
		var err error
		st, err = edge.Status(ctx)
		return err == nil && st.LastReload != nil && !st.LastReload.Before(tR.Add(-time.Second))
	})
	k.expect(reloaded && st.ReloadError == "", "GET /v1/status: last_reload %v, reload_error %q", lastReload(st), st.ReloadError)

	got, err = Probe(s.topo.Client, ap, 10)
	if err != nil {
		k.fail(err)
		return nil
	}
	src = s.echoes[ap].Sources()
	dev, _ := routeVia(ctx, ns, NewMediaAddr, EchoPort)
	k.expect(got == 10 && src[EdgeWANAddr] == 10 && len(src) == 1,
		"after: %d/10 echoed, seen from %s (direct, masqueraded on %s); ip route get: dev %s", got, sources(src), ifEdgeWAN, dev)

	// The call across the reload: from 1 s before to 2 s after.
	if err := sleep(ctx, time.Until(tR.Add(2*time.Second+inFlight))); err != nil {
		return err
	}
	for _, f := range s.flows() {
		w := f.Window(tR.Add(-time.Second), tR.Add(2*time.Second+inFlight))
		k.expect(w.Sent > 0 && w.Received == w.Sent, "%s from 1 s before to 2 s after SIGHUP: %d/%d frames", f.Name, w.Received, w.Sent)
	}
	var sess struct {
		ID string `json:"id"`
	}
	err = edge.Control.Do(ctx, "GET", "/v1/sessions/"+s.sessionID, nil, &sess)
	k.expect(err == nil && sess.ID == s.sessionID, "GET /v1/sessions/%s: still there (%v)", s.sessionID, errOrOK(err))
	return nil
}

func lastReload(st DaemonStatus) string {
	if st.LastReload == nil {
		return "none"
	}
	return st.LastReload.Format(time.RFC3339Nano)
}

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// stepStop sends SIGTERM while the call runs and compares the edge's
// routing with what it was before mediaedge started.
func (s *scenario) stepStop(ctx context.Context) error {
	if s.opt.Hold != nil {
		s.opt.Hold(ctx, s.topo, s.dir)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	k := newChecker("SIGTERM removes every rule and route mediaedge installed")
	defer func() { s.record(k.done()) }()
	took, err := s.edge.Stop()
	k.expect(err == nil, "mediaedge exited %s after SIGTERM (%v)", took.Round(time.Millisecond), exitStatus(err))
	after, serr := routingSnapshot(ctx, s.topo.Edge)
	if serr != nil {
		k.fail(serr)
		return nil
	}
	d := diffLines(s.baseline, after)
	k.expect(len(d) == 0, "ip rule + ip route show table all, IPv4 and IPv6: %d lines, %d differ from before mediaedge started", len(after), len(d))
	for i, l := range d {
		if i == 10 {
			k.note("... %d more", len(d)-10)
			break
		}
		k.note("%s", l)
	}
	dev, err := routeVia(ctx, s.topo.Edge, CloudMediaAddr, CloudSRTPPort)
	k.expect(err == nil && dev == ifEdgeVPN, "ip route get %s from the client: dev %s again (the full tunnel)", CloudMediaAddr, dev)
	var warn, errs int
	var shown []string
	for _, l := range strings.Split(s.edge.Log(), "\n") {
		isWarn, isErr := strings.Contains(l, "level=WARN"), strings.Contains(l, "level=ERROR")
		if isWarn {
			warn++
		}
		if isErr {
			errs++
		}
		if (isWarn || isErr) && len(shown) < 5 {
			// Drop the time stamp; keep the level and the message.
			if i := strings.Index(l, "level="); i >= 0 {
				l = l[i:]
			}
			shown = append(shown, truncate(l, 240))
		}
	}
	k.note("daemon log over the run: %d warnings, %d errors", warn, errs)
	for _, l := range shown {
		k.note("  %s", l)
	}
	return nil
}

func exitStatus(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
