package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// stepTopology builds the namespaces, starts the echo services and records
// the routing state before mediaedge runs.
func (s *scenario) stepTopology(ctx context.Context) error {
	k := newChecker("topology: client, edge, VPN concentrator and internet namespaces")
	defer func() { s.record(k.done()) }()
	topo, err := BuildTopology(ctx, s.opt.Prefix, s.opt.EdgeSysctl)
	if err != nil {
		k.fail(err)
		return err
	}
	s.topo = topo
	k.note("namespaces %s, %s, %s, %s (veth links; the edge masquerades on %s)",
		topo.Client.Name, topo.Edge.Name, topo.Concentrator.Name, topo.Internet.Name, ifEdgeWAN)
	if s.opt.EdgeSysctl != "" {
		k.note("edge sysctls from %s (as installed)", s.opt.EdgeSysctl)
		for _, l := range topo.SysctlNotes {
			k.note("  %s", l)
		}
	}
	for _, e := range []struct {
		ns   *Netns
		addr netip.Addr
	}{
		{topo.Internet, CloudMediaAddr}, {topo.Internet, CloudWebAddr}, {topo.Internet, NewMediaAddr},
		{topo.Internet, CloudMediaAddr6}, {topo.Internet, CloudWebAddr6},
		{topo.Concentrator, CorpHostAddr}, {topo.Concentrator, CorpHostAddr6},
	} {
		ap := netip.AddrPortFrom(e.addr, EchoPort)
		echo, err := StartEcho(e.ns, ap.String())
		if err != nil {
			k.fail(err)
			return err
		}
		s.echoes[ap] = echo
	}
	// Before mediaedge, the full tunnel takes everything: the cloud media
	// server sees the client as the concentrator.
	for _, dst := range []netip.Addr{CloudMediaAddr, CloudMediaAddr6} {
		dev, err := routeVia(ctx, topo.Edge, dst, CloudSRTPPort)
		if err != nil {
			k.fail(err)
			return err
		}
		ap := netip.AddrPortFrom(dst, EchoPort)
		got, err := Probe(topo.Client, ap, 10)
		if err != nil {
			k.fail(err)
			return err
		}
		src := s.echoes[ap].Sources()
		k.expect(dev == ifEdgeVPN && got == 10 && src[vpnAddr(dst)] == 10,
			"without mediaedge, client -> %s goes via %s: 10 probes, %d echoed, the server saw them from %s",
			dst, dev, got, sources(src))
	}
	if s.baseline, err = routingSnapshot(ctx, topo.Edge); err != nil {
		k.fail(err)
		return err
	}
	k.note("edge routing before mediaedge recorded: %d lines of ip rule / ip route show table all", len(s.baseline))
	if !k.c.Pass {
		return fmt.Errorf("e2e: the topology does not route as designed")
	}
	return nil
}

// stepDaemon starts `mediaedge run` on the edge and checks that the policy
// took effect.
func (s *scenario) stepDaemon(ctx context.Context) error {
	k := newChecker("mediaedge run: relay, gateway and policy running on the edge")
	defer func() { s.record(k.done()) }()
	edge, err := StartEdge(ctx, s.topo.Edge, s.opt.Bin, s.dir)
	if edge != nil {
		s.edge = edge
	}
	if err != nil {
		k.fail(err)
		return err
	}
	k.note("%s run --config %s (pid %d)", s.opt.Bin, edge.ConfigPath, edge.cmd.Process.Pid)
	st, err := edge.Status(ctx)
	if err != nil {
		k.fail(err)
		return err
	}
	var states []string
	for _, name := range []string{"policy", "gateway", "relay"} {
		states = append(states, name+"="+st.Components[name].State)
	}
	k.note("GET /v1/status: %s", strings.Join(states, " "))
	// The policy applies asynchronously after start-up: wait for it.
	mark := fmt.Sprintf("fwmark %#x", Mark)
	for _, c := range []struct {
		fam    string
		prefix netip.Prefix
		dst    netip.Addr
	}{
		{"-4", netip.MustParsePrefix("52.112.0.0/14"), CloudMediaAddr},
		{"-6", netip.MustParsePrefix("2603:1063::/38"), CloudMediaAddr6},
	} {
		var rules string
		ok := waitFor(ctx, 5*time.Second, func() bool {
			out, err := s.topo.Edge.IP(ctx, c.fam, "rule", "show")
			rules = out
			has, _ := tableHas(ctx, s.topo.Edge, "100", c.prefix)
			return err == nil && strings.Contains(out, mark) && has
		})
		var ours []string
		for _, l := range strings.Split(rules, "\n") {
			if strings.Contains(l, "lookup 10") || strings.Contains(l, mark) {
				ours = append(ours, strings.Join(strings.Fields(l), " "))
			}
		}
		k.expect(ok, "ip %s rule: %s", c.fam, strings.Join(ours, " | "))
		dev, err := routeVia(ctx, s.topo.Edge, c.dst, CloudSRTPPort)
		k.expect(err == nil && dev == ifEdgeWAN, "ip route get %s from the client: dev %s (table 100 holds %s from the teams preset)", c.dst, dev, c.prefix)
	}
	if !k.c.Pass {
		return fmt.Errorf("e2e: the policy did not install its rules; log:\n%s", edge.LogTail(30))
	}
	return nil
}
