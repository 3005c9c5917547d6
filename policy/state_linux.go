package policy

import (
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route metrics. Every route mediaedge installs carries an explicit metric
// so that IPv4 and IPv6 read back the same (IPv6 turns metric 0 into 1024).
const (
	metricRoute = 1024
	// metricUnreachable puts the fail-closed twins below every real route:
	// when the kernel deletes the uplink's routes (link down) the twin is
	// what is left.
	metricUnreachable = 4000000000
)

// Uplink states, as status reports them.
const (
	uplinkUp        = "up"
	uplinkDown      = "down"       // administratively down
	uplinkNoCarrier = "no-carrier" // admin up, no carrier (cable, ISP side)
	uplinkMissing   = "missing"    // no such interface
	uplinkUnknown   = "unknown"    // plan mode without an interface
)

// uplinkFacts is what the reconciler learned about the uplink on one pass.
// It is a value, rebuilt on every pass.
type uplinkFacts struct {
	name  string
	index int // 0: missing; placeholderIndex: plan without the interface
	state string
	p2p   bool
	fam   [2]famFacts // [0] IPv4, [1] IPv6
}

// placeholderIndex stands for an uplink that plan mode could not resolve;
// routes through it render as "via <gateway> dev <name>".
const placeholderIndex = -1

// famFacts is the uplink's state for one address family.
type famFacts struct {
	addrs  []netip.Addr
	gw     netip.Addr
	gwFrom string // "config", "main table", "remembered"
	usable bool
	reason string // why not usable
}

func famIndex(family int) int {
	if family == unix.AF_INET6 {
		return 1
	}
	return 0
}

// desired is a complete rule set: what the kernel should hold, in
// mediaedge's protocol, for one configuration and one uplink state.
type desired struct {
	rules  []netlink.Rule
	routes []netlink.Route
}

// desire computes the rule set for cfg, media and the uplink's state. It is
// a pure function: the same inputs give the same rules and routes, in the
// same order.
//
// Rules select the traffic class and tables hold the prefixes:
//
//	P+0  fwmark M lookup main suppress_prefixlength 0   marked sockets keep LAN/corporate specifics
//	P+1  fwmark M lookup direct                         marked sockets otherwise go direct
//	P+2  from <uplink address> lookup direct            uplink-sourced traffic (replies, strict rp_filter)
//	P+10 [ipproto udp dport R] lookup media              media (one rule per port range with match: udp)
//	P+20 ipproto udp dport R lookup direct               port-only media
//
// The media table holds the media prefixes via the uplink and no default,
// so a miss falls through to main (the VPN). The direct table holds a
// default via the uplink and throw routes for the corporate prefixes, so a
// marked socket talking to the corporate network still uses the VPN.
func desire(cfg *Config, media *MediaSet, up *uplinkFacts) desired {
	var d desired
	fams := cfg.familySet()
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		v4 := family == unix.AF_INET
		if (v4 && !fams.v4) || (!v4 && !fams.v6) {
			continue
		}
		ff := &up.fam[famIndex(family)]
		d.rules = append(d.rules, desiredRules(cfg, media, family, ff)...)
		d.routes = append(d.routes, desiredRoutes(cfg, media, family, up, ff)...)
	}
	return d
}

func (c *Config) newRule(family, prio, table int) netlink.Rule {
	// Always start from NewRule: a literal Rule{} has Goto 0, which the
	// library sends as a 'goto 0' rule, and Priority 0.
	r := netlink.NewRule()
	r.Family = family
	r.Priority = prio
	r.Table = table
	r.Protocol = uint8(c.Protocol)
	return *r
}

func desiredRules(cfg *Config, media *MediaSet, family int, ff *famFacts) []netlink.Rule {
	var rules []netlink.Rule
	pMark, pMarkDirect, pFrom, pMedia, pPortOnly := cfg.rulePriorities()
	if cfg.Mark != 0 {
		mask := uint32(0xffffffff)
		r := cfg.newRule(family, pMark, tableMain)
		r.Mark, r.Mask = uint32(cfg.Mark), &mask
		r.SuppressPrefixlen = 0
		rules = append(rules, r)
		r = cfg.newRule(family, pMarkDirect, cfg.Tables.Direct)
		r.Mark, r.Mask = uint32(cfg.Mark), &mask
		rules = append(rules, r)
	}
	for _, a := range ff.addrs {
		r := cfg.newRule(family, pFrom, cfg.Tables.Direct)
		r.Src = ipnetOf(netip.PrefixFrom(a, a.BitLen()))
		rules = append(rules, r)
	}
	if len(media.family(family == unix.AF_INET)) > 0 {
		switch cfg.Match {
		case MatchUDP:
			for _, pr := range media.UDPPorts {
				r := cfg.newRule(family, pMedia, cfg.Tables.Media)
				r.IPProto = unix.IPPROTO_UDP
				r.Dport = netlink.NewRulePortRange(pr.Min, pr.Max)
				rules = append(rules, r)
			}
		default:
			rules = append(rules, cfg.newRule(family, pMedia, cfg.Tables.Media))
		}
	}
	for _, pr := range media.PortOnly {
		r := cfg.newRule(family, pPortOnly, cfg.Tables.Direct)
		r.IPProto = unix.IPPROTO_UDP
		r.Dport = netlink.NewRulePortRange(pr.Min, pr.Max)
		rules = append(rules, r)
	}
	return rules
}

func desiredRoutes(cfg *Config, media *MediaSet, family int, up *uplinkFacts, ff *famFacts) []netlink.Route {
	var routes []netlink.Route
	via := func(dst netip.Prefix, table int) netlink.Route {
		rt := netlink.Route{
			Family:    family,
			Dst:       ipnetOf(dst),
			Table:     table,
			Protocol:  netlink.RouteProtocol(cfg.Protocol),
			Priority:  metricRoute,
			Type:      unix.RTN_UNICAST,
			LinkIndex: up.index,
		}
		if ff.gw.IsValid() {
			rt.Gw = ff.gw.AsSlice()
		} else if up.index > 0 {
			// A point-to-point uplink (ppp, tun) needs no next hop.
			rt.Scope = netlink.SCOPE_LINK
		}
		return rt
	}
	reject := func(typ int, dst netip.Prefix, table, metric int) netlink.Route {
		return netlink.Route{
			Family:   family,
			Dst:      ipnetOf(dst),
			Table:    table,
			Protocol: netlink.RouteProtocol(cfg.Protocol),
			Priority: metric,
			Type:     typ,
		}
	}
	def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if family == unix.AF_INET6 {
		def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	failClosed := cfg.OnUplinkDown == UplinkDownFailClosed
	for _, p := range media.family(family == unix.AF_INET) {
		if ff.usable {
			routes = append(routes, via(p, cfg.Tables.Media))
		}
		if failClosed {
			routes = append(routes, reject(unix.RTN_UNREACHABLE, p, cfg.Tables.Media, metricUnreachable))
		}
	}
	if ff.usable {
		routes = append(routes, via(def, cfg.Tables.Direct))
	}
	if failClosed {
		routes = append(routes, reject(unix.RTN_UNREACHABLE, def, cfg.Tables.Direct, metricUnreachable))
	}
	for _, c := range cfg.CorporatePrefixes {
		if c.Addr().Is4() == (family == unix.AF_INET) {
			routes = append(routes, reject(unix.RTN_THROW, c.Prefix, cfg.Tables.Direct, metricRoute))
		}
	}
	return routes
}

// render prints the rule set as `ip rule` and `ip route` listings, rules
// first, each family in order: the form plans and tests compare.
func (d *desired) render(names linkNamer) string {
	var b strings.Builder
	for i := range d.rules {
		b.WriteString(ruleKey(&d.rules[i]) + "\n")
	}
	for i := range d.routes {
		b.WriteString(routeKey(&d.routes[i], names) + "\n")
	}
	return b.String()
}

// tables returns the table ids cfg fills.
func (c *Config) tables() []int {
	return []int{c.Tables.Media, c.Tables.Direct}
}
