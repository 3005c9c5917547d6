package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Topology is the scenario's four namespaces and their links:
//
//	client eth0 ──── lan0 EDGE wan0 ──── isp0 INTERNET (52.112.0.10, 192.0.2.80, 192.0.2.200)
//	                       vpn0                        corp0
//	                        │                            │
//	                       tun0 CONCENTRATOR inet0 ──────┘  (corporate host 10.99.0.1)
//
// The edge's main table sends everything into the tunnel (vpn0, the
// decapsulated side of a full-tunnel VPN); wan0 is the direct uplink, with
// only its connected route until mediaedge's policy adds its own. Both the
// edge (on wan0) and the concentrator (on inet0) masquerade, IPv4 and IPv6
// (addresses in addr.go). It is made by BuildTopology and ends with Close.
type Topology struct {
	Client, Edge, Concentrator, Internet *Netns
	// SysctlNotes are the messages of sysctl when it applied the edge's
	// sysctl file (keys the namespace refused), for the evidence.
	SysctlNotes []string
	all         []*Netns
}

// BuildTopology makes the namespaces "<prefix>-<pid>-{client,edge,vpn,inet}"
// and wires them. edgeSysctl, when not empty, is a sysctl.d file applied to
// the edge before its links exist, as systemd-sysctl applies the installed
// systemd/mediaedge.sysctl at boot. On error it removes what it made.
func BuildTopology(ctx context.Context, prefix, edgeSysctl string) (t *Topology, err error) {
	t = &Topology{}
	defer func() {
		if err != nil {
			_ = t.Close(context.WithoutCancel(ctx))
			t = nil
		}
	}()
	pid := os.Getpid()
	for _, ns := range []struct {
		role string
		dst  **Netns
	}{{"client", &t.Client}, {"edge", &t.Edge}, {"vpn", &t.Concentrator}, {"inet", &t.Internet}} {
		n, err := addNetns(ctx, nsName(prefix, pid, ns.role))
		if err != nil {
			return nil, err
		}
		*ns.dst = n
		t.all = append(t.all, n)
		// Before any link exists, so that new links inherit it: no
		// router solicitations (there is no router advertising here) and
		// no duplicate address detection, so that the interface counters
		// the checks read carry the scenario's packets only.
		if err := n.Sysctl(ctx,
			"net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0",
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
			return nil, err
		}
		if _, err := n.IP(ctx, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	if edgeSysctl != "" {
		// sysctl -p reports keys it cannot set and goes on; those lines
		// are kept as evidence.
		out, err := t.Edge.Exec(ctx, "sysctl", "-q", "-p", edgeSysctl)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "" {
				t.SysctlNotes = append(t.SysctlNotes, l)
			}
		}
	}
	c, e, v, i := t.Client, t.Edge, t.Concentrator, t.Internet
	steps := []struct {
		ns   *Netns
		args []string
	}{
		// links: each veth is made in one namespace with its peer in the other
		{c, []string{"link", "add", ifClientLAN, "type", "veth", "peer", "name", ifEdgeLAN, "netns", e.Name}},
		{e, []string{"link", "add", ifEdgeVPN, "type", "veth", "peer", "name", ifConcTunnel, "netns", v.Name}},
		{e, []string{"link", "add", ifEdgeWAN, "type", "veth", "peer", "name", ifInetUplink, "netns", i.Name}},
		{v, []string{"link", "add", ifConcInet, "type", "veth", "peer", "name", ifInetCorpLnk, "netns", i.Name}},
		// client
		{c, []string{"addr", "add", ClientAddr.String() + "/24", "dev", ifClientLAN}},
		{c, []string{"link", "set", ifClientLAN, "up"}},
		{c, []string{"route", "add", "default", "via", EdgeLANAddr.String()}},
		// edge
		{e, []string{"addr", "add", EdgeLANAddr.String() + "/24", "dev", ifEdgeLAN}},
		{e, []string{"addr", "add", EdgeVPNAddr.String() + "/30", "dev", ifEdgeVPN}},
		{e, []string{"addr", "add", EdgeWANAddr.String() + "/24", "dev", ifEdgeWAN}},
		{e, []string{"link", "set", ifEdgeLAN, "up"}},
		{e, []string{"link", "set", ifEdgeVPN, "up"}},
		{e, []string{"link", "set", ifEdgeWAN, "up"}},
		{e, []string{"route", "add", "default", "via", ConcentratorAddr.String(), "dev", ifEdgeVPN}},
		// concentrator
		{v, []string{"addr", "add", ConcentratorAddr.String() + "/30", "dev", ifConcTunnel}},
		{v, []string{"addr", "add", ConcentratorPublicAddr.String() + "/24", "dev", ifConcInet}},
		{v, []string{"addr", "add", CorpHostAddr.String() + "/32", "dev", "lo"}},
		{v, []string{"link", "set", ifConcTunnel, "up"}},
		{v, []string{"link", "set", ifConcInet, "up"}},
		{v, []string{"route", "add", "default", "via", InternetCorpSideAddr.String()}},
		{v, []string{"route", "add", "10.20.0.0/24", "via", EdgeVPNAddr.String()}},
		// internet
		{i, []string{"addr", "add", WANGatewayAddr.String() + "/24", "dev", ifInetUplink}},
		{i, []string{"addr", "add", InternetCorpSideAddr.String() + "/24", "dev", ifInetCorpLnk}},
		{i, []string{"addr", "add", CloudMediaAddr.String() + "/32", "dev", "lo"}},
		{i, []string{"addr", "add", CloudWebAddr.String() + "/32", "dev", "lo"}},
		{i, []string{"addr", "add", NewMediaAddr.String() + "/32", "dev", "lo"}},
		{i, []string{"link", "set", ifInetUplink, "up"}},
		{i, []string{"link", "set", ifInetCorpLnk, "up"}},
		// IPv6, the same shape
		{c, []string{"addr", "add", ClientAddr6.String() + "/64", "dev", ifClientLAN, "nodad"}},
		{c, []string{"-6", "route", "add", "default", "via", EdgeLANAddr6.String()}},
		{e, []string{"addr", "add", EdgeLANAddr6.String() + "/64", "dev", ifEdgeLAN, "nodad"}},
		{e, []string{"addr", "add", EdgeVPNAddr6.String() + "/64", "dev", ifEdgeVPN, "nodad"}},
		{e, []string{"addr", "add", EdgeWANAddr6.String() + "/64", "dev", ifEdgeWAN, "nodad"}},
		{e, []string{"-6", "route", "add", "default", "via", ConcentratorAddr6.String(), "dev", ifEdgeVPN}},
		{v, []string{"addr", "add", ConcentratorAddr6.String() + "/64", "dev", ifConcTunnel, "nodad"}},
		{v, []string{"addr", "add", ConcentratorPublicAddr6.String() + "/64", "dev", ifConcInet, "nodad"}},
		{v, []string{"addr", "add", CorpHostAddr6.String() + "/128", "dev", "lo"}},
		{v, []string{"-6", "route", "add", "default", "via", InternetCorpSideAddr6.String()}},
		{v, []string{"-6", "route", "add", "fd20::/64", "via", EdgeVPNAddr6.String()}},
		{i, []string{"addr", "add", WANGatewayAddr6.String() + "/64", "dev", ifInetUplink, "nodad"}},
		{i, []string{"addr", "add", InternetCorpSideAddr6.String() + "/64", "dev", ifInetCorpLnk, "nodad"}},
		{i, []string{"addr", "add", CloudMediaAddr6.String() + "/128", "dev", "lo"}},
		{i, []string{"addr", "add", CloudWebAddr6.String() + "/128", "dev", "lo"}},
	}
	for _, s := range steps {
		if _, err := s.ns.IP(ctx, s.args...); err != nil {
			return nil, err
		}
	}
	for _, n := range []*Netns{e, v} {
		if err := n.Sysctl(ctx, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
			return nil, err
		}
	}
	if err := masquerade(ctx, e, ifEdgeWAN); err != nil {
		return nil, err
	}
	if err := masquerade(ctx, v, ifConcInet); err != nil {
		return nil, err
	}
	return t, nil
}

// masquerade installs source NAT, IPv4 and IPv6, on the namespace's
// interface.
func masquerade(ctx context.Context, n *Netns, ifname string) error {
	rules := fmt.Sprintf(`table inet e2e_nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q masquerade
	}
}
`, ifname)
	_, err := runStdin(ctx, rules, "ip", "netns", "exec", n.Name, "nft", "-f", "-")
	return err
}

// Close deletes every namespace of the topology, killing what still runs
// inside them. It is idempotent.
func (t *Topology) Close(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	for i := len(t.all) - 1; i >= 0; i-- {
		if err := t.all[i].delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	t.all = nil
	return errors.Join(errs...)
}
