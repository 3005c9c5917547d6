package e2e

import (
	"context"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// routingSnapshot returns the edge's policy routing state as sorted lines:
// `ip rule` and `ip route show table all`, IPv4 and IPv6. Sorting makes it
// independent of the order in which the kernel lists routes re-added after
// a link flap.
func routingSnapshot(ctx context.Context, ns *Netns) ([]string, error) {
	var lines []string
	for _, args := range [][]string{
		{"-4", "rule", "show"},
		{"-6", "rule", "show"},
		{"-4", "route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
	} {
		out, err := ns.IP(ctx, args...)
		if err != nil {
			return nil, err
		}
		tag := "ip " + strings.Join(args, " ") + ": "
		for _, l := range strings.Split(out, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, tag+l)
			}
		}
	}
	sort.Strings(lines)
	return lines, nil
}

// diffLines returns the lines only in before ("- ...") and only in after
// ("+ ..."); both inputs are sorted.
func diffLines(before, after []string) []string {
	var d []string
	i, j := 0, 0
	for i < len(before) || j < len(after) {
		switch {
		case j >= len(after) || i < len(before) && before[i] < after[j]:
			d = append(d, "- "+before[i])
			i++
		case i >= len(before) || after[j] < before[i]:
			d = append(d, "+ "+after[j])
			j++
		default:
			i++
			j++
		}
	}
	return d
}

var devRe = regexp.MustCompile(`\bdev (\S+)`)

// routeVia asks the edge's kernel which interface a datagram from the
// client to dst leaves on, as forwarded traffic (iif lan0). The answer is
// only a diagnostic: the checks rest on packets.
func routeVia(ctx context.Context, edge *Netns, dst netip.Addr, dport int) (string, error) {
	out, err := edge.IP(ctx, "route", "get", dst.String(), "from", clientAddr(dst).String(), "iif", ifEdgeLAN,
		"ipproto", "udp", "dport", strconv.Itoa(dport))
	if err != nil {
		return "", err
	}
	if m := devRe.FindStringSubmatch(out); m != nil {
		return m[1], nil
	}
	return strings.TrimSpace(out), nil
}

// tableHas reports whether the edge's routing table holds a route to p.
func tableHas(ctx context.Context, edge *Netns, table string, p netip.Prefix) (bool, error) {
	fam := "-4"
	if p.Addr().Is6() {
		fam = "-6"
	}
	out, err := edge.IP(ctx, fam, "route", "show", "table", table)
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == p.String() || p.IsSingleIP() && f[0] == p.Addr().String()) {
			return true, nil
		}
	}
	return false, nil
}
