package policy

import (
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
)

// foreignRuleWarnings returns warnings about rules mediaedge does not own:
// catch-alls with a lower priority than its rules, which take the traffic
// first (a VPN client adding `lookup 51820` without a priority after
// mediaedge started lands above it), and rules inside its priority range.
func foreignRuleWarnings(cfg *Config, rules []netlink.Rule, protos []uint8) []string {
	var warns []string
	for i := range rules {
		r := &rules[i]
		if slices.Contains(protos, r.Protocol) {
			continue
		}
		switch {
		case cfg.ownsPriority(r.Priority):
			warns = append(warns, fmt.Sprintf("foreign rule inside mediaedge's priority range %d-%d: %s %s",
				cfg.Priority, cfg.Priority+prioritySpan-1, famFlag(r.Family), ruleString(r)))
		case r.Priority < cfg.Priority && shadows(cfg, r):
			warns = append(warns, fmt.Sprintf("foreign rule takes traffic before mediaedge's rules (priority %d < %d): %s %s",
				r.Priority, cfg.Priority, famFlag(r.Family), ruleString(r)))
		}
	}
	return warns
}

// shadows reports whether r can match media or marked traffic whatever its
// destination: a table lookup with no selector that narrows it, apart from
// a mark that media can carry.
func shadows(cfg *Config, r *netlink.Rule) bool {
	if r.Goto >= 0 || r.Table == tableLocal || r.Table == 0 {
		return false
	}
	// A suppressing lookup only lets more specific routes of that table
	// win, as mediaedge's own fwmark rule does with main.
	if r.SuppressPrefixlen >= 0 || r.SuppressIfgroup >= 0 {
		return false
	}
	if r.Src != nil || r.Dst != nil || r.IifName != "" || r.OifName != "" || r.IPProto != 0 ||
		r.Sport != nil || r.Dport != nil || r.UIDRange != nil || r.Tos != 0 {
		return false
	}
	if r.Mark != 0 || r.Mask != nil {
		// "not fwmark X" catches all unmarked media; "fwmark M" with
		// mediaedge's own mark catches its sockets.
		return r.Invert || (cfg.Mark != 0 && r.Mark == uint32(cfg.Mark))
	}
	return true
}
