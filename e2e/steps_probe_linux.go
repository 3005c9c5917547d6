package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// stepOtherTraffic shows that what is not media keeps using the VPN: a
// cloud host outside the media prefixes, and a corporate host.
func (s *scenario) stepOtherTraffic(ctx context.Context) error {
	k := newChecker("other traffic to the internet (and to the corporate network) still goes through the VPN")
	defer func() { s.record(k.done()) }()
	const n = 20
	const targets = 4
	c0, err := readCounters(ctx, s.topo.Edge, ifEdgeVPN)
	if err != nil {
		k.fail(err)
		return nil
	}
	for _, t := range []struct {
		what string
		dst  netip.Addr
		want netip.Addr
		via  string
	}{
		{"cloud host", CloudWebAddr, ConcentratorPublicAddr, "the concentrator's public address: through the VPN"},
		{"cloud host", CloudWebAddr6, ConcentratorPublicAddr6, "the concentrator's public address: through the VPN"},
		{"corporate host", CorpHostAddr, ClientAddr, "the client's own address, through the tunnel"},
		{"corporate host", CorpHostAddr6, ClientAddr6, "the client's own address, through the tunnel"},
	} {
		ap := netip.AddrPortFrom(t.dst, EchoPort)
		got, err := Probe(s.topo.Client, ap, n)
		if err != nil {
			k.fail(err)
			continue
		}
		src := s.echoes[ap].Sources()
		dev, _ := routeVia(ctx, s.topo.Edge, t.dst, EchoPort)
		k.expect(got == n && src[t.want] == n && len(src) == 1,
			"%s %s: %d/%d echoed; it saw them from %s (%s); ip route get: dev %s", t.what, t.dst, got, n, sources(src), t.via, dev)
	}
	c1, err := readCounters(ctx, s.topo.Edge, ifEdgeVPN)
	if err != nil {
		k.fail(err)
		return nil
	}
	vpn := c1[ifEdgeVPN].Sub(c0[ifEdgeVPN])
	k.expect(vpn.TxPackets >= targets*n && vpn.RxPackets >= targets*n, "%s: tx +%d packets, rx +%d during the %d probes", ifEdgeVPN, vpn.TxPackets, vpn.RxPackets, targets*n)
	return nil
}

// stepMetrics scrapes the metrics endpoint and holds its counters against
// what the peers sent and received around the scrape.
func (s *scenario) stepMetrics(ctx context.Context) error {
	k := newChecker("the metrics endpoint reports the traffic")
	defer func() { s.record(k.done()) }()
	type tot struct{ sent, got int }
	before := map[*Flow]tot{}
	for _, f := range s.flows() {
		sent, got := f.Totals()
		before[f] = tot{sent, got}
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), MetricsPort).String()
	m, err := Scrape(ctx, s.topo.Edge.DialContext, addr)
	if err != nil {
		k.fail(err)
		return nil
	}
	after := map[*Flow]tot{}
	for _, f := range s.flows() {
		sent, got := f.Totals()
		after[f] = tot{sent, got}
	}
	k.note("GET http://%s/metrics inside the edge: %d samples", addr, len(m))
	counter := func(fs []*Flow, name string, labels ...string) {
		v, found := m.Sum(name, labels...)
		var lo, hi int
		for _, f := range fs {
			lo += before[f].got
			hi += after[f].sent
		}
		k.expect(found && v >= float64(lo) && v <= float64(hi),
			"%s%s = %.0f (the receivers had %d intact before the scrape, the senders %d sent after it)", name, labelText(labels), v, lo, hi)
	}
	turnUp, turnDown := []*Flow{s.turnUp, s.turn6Up}, []*Flow{s.turnDown, s.turn6Down}
	gwUp, gwDown := []*Flow{s.gwUp}, []*Flow{s.gwDown}
	counter(turnUp, "mediaedge_relay_packets_total", "direction=to_peer")
	counter(turnDown, "mediaedge_relay_packets_total", "direction=to_client")
	counter(gwUp, "mediaedge_gateway_packets_total", "leg=internal", "direction=in")
	counter(gwUp, "mediaedge_gateway_packets_total", "leg=cloud", "direction=out")
	counter(gwDown, "mediaedge_gateway_packets_total", "leg=cloud", "direction=in")
	counter(gwDown, "mediaedge_gateway_packets_total", "leg=internal", "direction=out")
	gauge := func(name string, want func(float64) bool, what string, labels ...string) {
		v, found := m.Sum(name, labels...)
		k.expect(found && want(v), "%s%s = %.0f (%s)", name, labelText(labels), v, what)
	}
	gauge("mediaedge_relay_allocations_active", func(v float64) bool { return v == 2 }, "the client's IPv4 and IPv6 allocations")
	gauge("mediaedge_gateway_sessions", func(v float64) bool { return v == 1 }, "the call")
	gauge("mediaedge_policy_uplink_up", func(v float64) bool { return v == 1 }, "wan0 carries IPv4 media", "family=ipv4")
	gauge("mediaedge_policy_uplink_up", func(v float64) bool { return v == 1 }, "wan0 carries IPv6 media", "family=ipv6")
	gauge("mediaedge_policy_rules_owned", func(v float64) bool { return v > 0 }, "rules installed")
	return nil
}

// labelText formats label matchers as PromQL does: {a="b",c="d"}.
func labelText(kv []string) string {
	if len(kv) == 0 {
		return ""
	}
	parts := make([]string, len(kv))
	for i, p := range kv {
		k, v, _ := strings.Cut(p, "=")
		parts[i] = fmt.Sprintf("%s=%q", k, v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}
