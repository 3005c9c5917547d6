//go:build linux

package policy

import (
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/config"
)

// flowFilter selects the conntrack entries of media flows whose path
// changed. A UDP flow keeps its conntrack entry while packets keep coming:
// a flow that moved to the VPN (no NAT) and back keeps its no-NAT entry
// and leaves the uplink with its private source address, which the far
// end cannot answer. Deleting the entry makes the next packet take the
// current path and NAT. It implements netlink.CustomConntrackFilter.
type flowFilter struct {
	prefixes  []netip.Prefix     // media destinations whose route changed
	udpOnly   bool               // match udp: only UDP to ports
	ports     []config.PortRange // media ports (udpOnly)
	portOnly  []config.PortRange // port-only media: UDP to these, any destination...
	corporate []netip.Prefix     // ...except these
}

// MatchConntrackFlow reports whether flow is a media flow to delete.
func (f *flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	dst, ok := netip.AddrFromSlice(flow.Forward.DstIP)
	if !ok {
		return false
	}
	dst = dst.Unmap()
	udp := flow.Forward.Protocol == unix.IPPROTO_UDP
	port := flow.Forward.DstPort
	inPorts := func(rs []config.PortRange) bool {
		return slices.ContainsFunc(rs, func(r config.PortRange) bool { return r.Contains(port) })
	}
	if slices.ContainsFunc(f.prefixes, func(p netip.Prefix) bool { return p.Contains(dst) }) {
		if !f.udpOnly || (udp && inPorts(f.ports)) {
			return true
		}
	}
	if udp && inPorts(f.portOnly) {
		return !slices.ContainsFunc(f.corporate, func(p netip.Prefix) bool { return p.Contains(dst) })
	}
	return false
}

// empty reports whether the filter can match nothing.
func (f *flowFilter) empty() bool { return len(f.prefixes) == 0 && len(f.portOnly) == 0 }

// flowFilters builds, per family, the filter for the media routes that
// changed in done: media-table routes select their prefixes; a change of
// the direct table's default moves port-only media and marked sockets.
func flowFilters(cfg *Config, media *MediaSet, done []op) map[int]*flowFilter {
	out := map[int]*flowFilter{}
	for _, o := range done {
		if !o.media || (o.kind != opRouteReplace && o.kind != opRouteDel) {
			continue
		}
		family := o.route.Family
		f := out[family]
		if f == nil {
			f = &flowFilter{udpOnly: cfg.Match == MatchUDP, ports: media.UDPPorts}
			for _, c := range cfg.CorporatePrefixes {
				f.corporate = append(f.corporate, c.Prefix)
			}
			out[family] = f
		}
		if o.route.Table == cfg.Tables.Media {
			if p, ok := prefixOf(o.route.Dst); ok && !slices.Contains(f.prefixes, p) {
				f.prefixes = append(f.prefixes, p)
			}
		} else {
			f.portOnly = media.PortOnly
		}
	}
	for fam, f := range out {
		if f.empty() {
			delete(out, fam)
		}
	}
	return out
}
