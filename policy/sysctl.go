package policy

import (
	"fmt"
	"strconv"
)

// sysctlCheck is one kernel setting the rule set relies on.
type sysctlCheck struct {
	paths []string // under /proc/sys/net; the effective value combines them
	// combine turns the values read into the effective one.
	combine func(vals []int) int
	ok      func(v int) bool
	warn    string
}

func maxOf(vals []int) int {
	m := vals[0]
	for _, v := range vals[1:] {
		m = max(m, v)
	}
	return m
}

func first(vals []int) int { return vals[0] }

// sysctlChecks lists what the policy needs from the kernel for cfg. The
// systemd sysctl file of the package sets all of them; the daemon checks
// them and warns, since a host may override the file.
func sysctlChecks(cfg *Config) []sysctlCheck {
	up := cfg.Uplink.Interface
	fams := cfg.familySet()
	var cs []sysctlCheck
	if fams.v4 {
		cs = append(cs,
			sysctlCheck{
				// The effective rp_filter is max(all, interface).
				paths:   []string{"ipv4/conf/all/rp_filter", "ipv4/conf/" + up + "/rp_filter"},
				combine: maxOf,
				ok:      func(v int) bool { return v != 1 },
				warn: "strict reverse-path filtering (rp_filter=1) on " + up +
					": replies of flows steered by port or mark may be dropped; set net.ipv4.conf.{all," + up + "}.rp_filter=2",
			},
			sysctlCheck{
				// IPv4 ORs "all" and the interface.
				paths: []string{"ipv4/conf/all/ignore_routes_with_linkdown", "ipv4/conf/" + up + "/ignore_routes_with_linkdown"}, combine: maxOf,
				ok: func(v int) bool { return v == 1 },
				warn: "net.ipv4.conf." + up + ".ignore_routes_with_linkdown=0: on carrier loss other routes through " + up +
					" stay in use (a black hole); set it to 1",
			},
			sysctlCheck{
				paths: []string{"ipv4/conf/all/forwarding"}, combine: first,
				ok:   func(v int) bool { return v == 1 },
				warn: "net.ipv4.conf.all.forwarding=0: LAN clients' media is not forwarded; only the edge's own sockets are steered",
			},
		)
	}
	if fams.v6 {
		cs = append(cs,
			sysctlCheck{
				// IPv6 reads the interface's value (writing "all" sets every
				// interface's).
				paths: []string{"ipv6/conf/" + up + "/ignore_routes_with_linkdown"}, combine: first,
				ok: func(v int) bool { return v == 1 },
				warn: "net.ipv6.conf." + up + ".ignore_routes_with_linkdown=0: on carrier loss other IPv6 routes through " + up +
					" stay in use (a black hole); set it to 1",
			},
			sysctlCheck{
				paths: []string{"ipv6/conf/all/keep_addr_on_down", "ipv6/conf/" + up + "/keep_addr_on_down"}, combine: maxOf,
				ok: func(v int) bool { return v > 0 },
				warn: "keep_addr_on_down=0 on " + up + ": a static IPv6 address is flushed when the link goes down and not restored; set net.ipv6.conf." +
					up + ".keep_addr_on_down=1",
			},
			sysctlCheck{
				paths: []string{"ipv6/conf/all/forwarding"}, combine: first,
				ok:   func(v int) bool { return v == 1 },
				warn: "net.ipv6.conf.all.forwarding=0: LAN clients' IPv6 media is not forwarded",
			},
		)
	}
	return cs
}

// checkSysctls returns a warning for each setting that is off. Settings
// that cannot be read (no such interface yet, not Linux) are skipped.
func checkSysctls(cfg *Config, read func(path string) (string, error)) []string {
	if cfg.Uplink.Interface == "" || read == nil {
		return nil
	}
	var warns []string
	for _, c := range sysctlChecks(cfg) {
		vals := make([]int, 0, len(c.paths))
		for _, p := range c.paths {
			s, err := read(p)
			if err != nil {
				break
			}
			v, err := strconv.Atoi(s)
			if err != nil {
				break
			}
			vals = append(vals, v)
		}
		if len(vals) != len(c.paths) {
			continue
		}
		if v := c.combine(vals); !c.ok(v) {
			warns = append(warns, fmt.Sprintf("sysctl: %s", c.warn))
		}
	}
	return warns
}
