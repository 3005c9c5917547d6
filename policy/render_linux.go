package policy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The renderers below print rules and routes the way iproute2 6.1 lists
// them (`ip rule`, `ip route show table all`), so that plans, status and
// test failures read like what an admin sees on the box, and commands the
// way iproute2 takes them, so that a plan can be pasted into a shell. The
// same text is the identity used to diff desired against actual state, so
// it must include every attribute that matters and nothing the kernel
// fills in by itself.

// famFlag returns "-4" or "-6".
func famFlag(family int) string {
	if family == unix.AF_INET6 {
		return "-6"
	}
	return "-4"
}

// tableName names the kernel's tables as iproute2 does.
func tableName(t int) string {
	switch t {
	case tableMain:
		return "main"
	case tableLocal:
		return "local"
	case tableDefault:
		return "default"
	}
	return strconv.Itoa(t)
}

func protoName(p int) string {
	switch p {
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	}
	return strconv.Itoa(p)
}

func portRangeString(r *netlink.RulePortRange) string {
	if r.Start == r.End {
		return strconv.Itoa(int(r.Start))
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// ipnetString prints an address or prefix as iproute2 does: a host prefix
// without its length, "all" for nothing.
func ipnetString(n *net.IPNet) string {
	if n == nil || n.IP == nil {
		return "all"
	}
	p, ok := prefixOf(n)
	if !ok {
		return n.String()
	}
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// prefixOf converts a net.IPNet to a netip.Prefix, unmapping IPv4.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

// ipnetOf converts a prefix to the library's type.
func ipnetOf(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ruleSelectors prints what a rule matches, without priority or action.
func ruleSelectors(r *netlink.Rule, command bool) string {
	var b strings.Builder
	if r.Invert {
		b.WriteString("not ")
	}
	if !command || r.Src != nil {
		b.WriteString("from " + ipnetString(r.Src))
	}
	if r.Dst != nil {
		b.WriteString(" to " + ipnetString(r.Dst))
	}
	if r.Tos != 0 {
		fmt.Fprintf(&b, " tos %#x", r.Tos)
	}
	if r.Mark != 0 || r.Mask != nil {
		fmt.Fprintf(&b, " fwmark %#x", r.Mark)
		if r.Mask != nil && *r.Mask != 0xffffffff {
			fmt.Fprintf(&b, "/%#x", *r.Mask)
		}
	}
	if r.IifName != "" {
		b.WriteString(" iif " + r.IifName)
	}
	if r.OifName != "" {
		b.WriteString(" oif " + r.OifName)
	}
	if r.UIDRange != nil {
		fmt.Fprintf(&b, " uidrange %d-%d", r.UIDRange.Start, r.UIDRange.End)
	}
	if r.IPProto != 0 {
		b.WriteString(" ipproto " + ipprotoName(r.IPProto))
	}
	if r.Sport != nil {
		b.WriteString(" sport " + portRangeString(r.Sport))
	}
	if r.Dport != nil {
		b.WriteString(" dport " + portRangeString(r.Dport))
	}
	if r.TunID != 0 {
		fmt.Fprintf(&b, " tun_id %d", r.TunID)
	}
	return strings.TrimPrefix(b.String(), " ")
}

// ruleAction prints what a rule does.
func ruleAction(r *netlink.Rule) string {
	var b strings.Builder
	if r.Goto >= 0 {
		fmt.Fprintf(&b, "goto %d", r.Goto)
	} else {
		b.WriteString("lookup " + tableName(r.Table))
	}
	if r.SuppressPrefixlen >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.SuppressPrefixlen)
	}
	if r.SuppressIfgroup >= 0 {
		fmt.Fprintf(&b, " suppress_ifgroup %d", r.SuppressIfgroup)
	}
	return b.String()
}

// ruleString prints r as `ip rule` lists it:
// "1000:	from all fwmark 0x4d45 lookup main suppress_prefixlength 0 proto 77".
func ruleString(r *netlink.Rule) string {
	s := fmt.Sprintf("%d:\t%s %s", r.Priority, ruleSelectors(r, false), ruleAction(r))
	if r.Protocol != 0 {
		s += " proto " + protoName(int(r.Protocol))
	}
	return s
}

// ruleKey identifies a rule for diffing: its family and its listing.
func ruleKey(r *netlink.Rule) string { return famFlag(r.Family) + " " + ruleString(r) }

// ruleCmd prints the ip command that adds or deletes r.
func ruleCmd(op string, r *netlink.Rule) string {
	parts := []string{"ip", famFlag(r.Family), "rule", op, "pref", strconv.Itoa(r.Priority)}
	if sel := ruleSelectors(r, true); sel != "" {
		parts = append(parts, sel)
	}
	parts = append(parts, ruleAction(r))
	if r.Protocol != 0 {
		parts = append(parts, "protocol", protoName(int(r.Protocol)))
	}
	return strings.Join(parts, " ")
}

// routeTypeName names non-unicast route types; "" for unicast.
func routeTypeName(t int) string {
	switch t {
	case unix.RTN_UNICAST, unix.RTN_UNSPEC:
		return ""
	case unix.RTN_THROW:
		return "throw"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_MULTICAST:
		return "multicast"
	}
	return "type" + strconv.Itoa(t)
}

// linkNamer maps interface indexes to names; unknown indexes print as
// "if<N>".
type linkNamer map[int]string

func (n linkNamer) name(idx int) string {
	if s, ok := n[idx]; ok {
		return s
	}
	return "if" + strconv.Itoa(idx)
}

// dstString prints a route's destination.
func dstString(rt *netlink.Route) string {
	if rt.Dst == nil || rt.Dst.IP == nil {
		return "default"
	}
	if ones, _ := rt.Dst.Mask.Size(); ones == 0 {
		return "default"
	}
	return ipnetString(rt.Dst)
}

// routeString prints rt as `ip route show table all` lists it, without the
// attributes the kernel fills in (scope, pref, src of connected routes):
// "52.112.0.0/14 via 198.51.100.1 dev wan0 table 100 proto 77 metric 1024".
// Reject routes (throw, unreachable) print no device: the kernel reports
// IPv6 ones on lo and IPv4 ones on none.
func routeString(rt *netlink.Route, names linkNamer) string {
	var b strings.Builder
	if t := routeTypeName(rt.Type); t != "" {
		b.WriteString(t + " ")
	}
	b.WriteString(dstString(rt))
	unicast := rt.Type == unix.RTN_UNICAST || rt.Type == unix.RTN_UNSPEC
	if rt.Gw != nil {
		b.WriteString(" via " + rt.Gw.String())
	} else if unicast && rt.LinkIndex < 0 {
		b.WriteString(" via <gateway>") // plan without a known gateway
	}
	if unicast && rt.LinkIndex != 0 {
		b.WriteString(" dev " + names.name(rt.LinkIndex))
	}
	b.WriteString(" table " + tableName(rt.Table))
	if rt.Protocol != 0 {
		b.WriteString(" proto " + protoName(int(rt.Protocol)))
	}
	if rt.Priority != 0 {
		fmt.Fprintf(&b, " metric %d", uint32(rt.Priority))
	}
	return b.String()
}

// routeID identifies a route slot in the kernel: family, table,
// destination, tos and metric. A replace overwrites the slot.
func routeID(rt *netlink.Route) string {
	return fmt.Sprintf("%s %s table %d tos %d metric %d", famFlag(rt.Family), dstString(rt), rt.Table, rt.Tos, uint32(rt.Priority))
}

// routeKey identifies a route with its content, for diffing.
func routeKey(rt *netlink.Route, names linkNamer) string {
	return famFlag(rt.Family) + " " + routeString(rt, names)
}

// routeCmd prints the ip command that replaces or deletes rt.
func routeCmd(op string, rt *netlink.Route, names linkNamer) string {
	return "ip " + famFlag(rt.Family) + " route " + op + " " + routeString(rt, names)
}
