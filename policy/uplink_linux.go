package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// gwMemory remembers the gateways learned from the main table, per family,
// for one uplink. The kernel deletes an IPv4 link's routes when it goes
// down and does not restore them when it comes back, so the route the
// gateway was learned from may be gone exactly when it is needed again.
// Owned by the Manager; guarded by its applyMu.
type gwMemory struct {
	name  string
	index int
	gw    [2]netip.Addr
}

func (m *gwMemory) forLink(name string, index int) {
	if m.name != name || m.index != index {
		*m = gwMemory{name: name, index: index}
	}
}

// resolveUplink reads the uplink's state, addresses and gateways. A
// missing interface is a state ("missing"), not an error: the caller
// decides whether that is fatal (start, reload) or a condition to ride
// out (a PPP link that comes and goes).
func (r *reconciler) resolveUplink(cfg *Config, mem *gwMemory) (uplinkFacts, error) {
	up := uplinkFacts{name: cfg.Uplink.Interface}
	if up.name == "" {
		up.state, up.index = uplinkUnknown, placeholderIndex
		for i := range up.fam {
			up.fam[i] = famFacts{usable: true, reason: "no uplink configured (plan only)"}
		}
		return up, nil
	}
	link, err := r.h.LinkByName(up.name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		up.state = uplinkMissing
		for i := range up.fam {
			up.fam[i].reason = "interface " + up.name + " does not exist"
		}
		return up, nil
	}
	if err != nil {
		return up, fmt.Errorf("looking up uplink %s: %w", up.name, err)
	}
	a := link.Attrs()
	up.index = a.Index
	up.p2p = a.Flags&net.FlagPointToPoint != 0
	switch {
	case a.Flags&net.FlagUp == 0:
		up.state = uplinkDown
	case a.Flags&net.FlagRunning == 0:
		// IFF_RUNNING follows the operational state: admin up without
		// carrier. The kernel keeps routes in place flagged linkdown and
		// still uses them unless ignore_routes_with_linkdown is set, which
		// makes the uplink a black hole; mediaedge removes them instead.
		up.state = uplinkNoCarrier
	default:
		up.state = uplinkUp
	}
	mem.forLink(up.name, up.index)
	for i, family := range []int{unix.AF_INET, unix.AF_INET6} {
		ff := &up.fam[i]
		if err := r.resolveFamily(cfg, link, family, mem, &up, ff); err != nil {
			return up, err
		}
	}
	return up, nil
}

func (r *reconciler) resolveFamily(cfg *Config, link netlink.Link, family int, mem *gwMemory, up *uplinkFacts, ff *famFacts) error {
	name := "IPv4"
	if family == unix.AF_INET6 {
		name = "IPv6"
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return r.h.AddrList(link, family) })
	if err != nil {
		return fmt.Errorf("listing %s addresses of %s: %w", name, up.name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		// Tentative (DAD running) and dadfailed addresses cannot be used
		// as a source; link-local ones are not the uplink's identity.
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 || ip.IsLinkLocalUnicast() {
			continue
		}
		ff.addrs = append(ff.addrs, ip)
	}
	slices.SortFunc(ff.addrs, netip.Addr.Compare)

	cfgGW := cfg.Uplink.Gateway4
	if family == unix.AF_INET6 {
		cfgGW = cfg.Uplink.Gateway6
	}
	fi := famIndex(family)
	switch {
	case cfgGW != "":
		ff.gw, _ = netip.ParseAddr(cfgGW) // checked by Validate
		ff.gwFrom = "config"
	default:
		gw, err := r.learnGateway(family, up.index)
		if err != nil {
			return err
		}
		switch {
		case gw.IsValid():
			ff.gw, ff.gwFrom = gw, "main table"
			mem.gw[fi] = gw
		case mem.gw[fi].IsValid():
			ff.gw, ff.gwFrom = mem.gw[fi], "remembered"
		}
	}

	switch {
	case up.state != uplinkUp:
		ff.reason = "uplink " + up.state
	case len(ff.addrs) == 0:
		ff.reason = fmt.Sprintf("no %s address on %s", name, up.name)
	case !ff.gw.IsValid() && !up.p2p:
		ff.reason = fmt.Sprintf("no %s gateway: set policy.uplink.gateway%c or add a route via %s to the main table",
			name, "46"[fi], up.name)
	default:
		ff.usable = true
	}
	return nil
}

// learnGateway returns the next hop of the uplink's best route in the main
// table: its default route if it has one (a full-tunnel VPN usually moves
// the default to the tunnel but leaves a host route to the concentrator via
// the uplink), otherwise any gatewayed route, lowest metric first.
func (r *reconciler) learnGateway(family, index int) (netip.Addr, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return r.h.RouteListFiltered(family, &netlink.Route{Table: tableMain, LinkIndex: index},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listing main routes of the uplink: %w", err)
	}
	var (
		best      netip.Addr
		bestScore = -1
	)
	for _, rt := range routes {
		gw, ok := netip.AddrFromSlice(rt.Gw)
		if !ok || rt.LinkIndex != index {
			continue
		}
		// Default routes first, then by metric.
		score := 1 << 40
		if rt.Dst == nil || onesOf(&rt) == 0 {
			score = 1 << 41
		}
		score -= int(uint32(rt.Priority))
		if score > bestScore {
			best, bestScore = gw.Unmap(), score
		}
	}
	return best, nil
}
