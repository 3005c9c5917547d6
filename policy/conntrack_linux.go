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
	// reverseOnly restricts the filter to entries made by the media
	// server's packet (original direction from the media address). The
	// delayed second flush uses it: by then the client's own flow has a
	// fresh, correct entry, and deleting that would cost the next inbound
	// packet (it arrives with no NAT mapping to undo).
	reverseOnly bool
}

// MatchConntrackFlow reports whether flow is a media flow to delete. The
// entry may have been made by either side: by the client's first packet
// (original direction towards the media address) or, when a reply still in
// flight on the old path arrives after the flush, by the media server's
// packet (original direction from the media address). Both are matched,
// the second by its source address and port.
func (f *flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	t := &flow.Forward
	udp := t.Protocol == unix.IPPROTO_UDP
	if dst, ok := netip.AddrFromSlice(t.DstIP); ok && !f.reverseOnly && f.matchMedia(dst.Unmap(), udp, t.DstPort) {
		return true
	}
	if src, ok := netip.AddrFromSlice(t.SrcIP); ok && f.matchMedia(src.Unmap(), udp, t.SrcPort) {
		return true
	}
	return false
}

// matchMedia reports whether addr and port (the far, media-server end of a
// flow) belong to media whose path changed.
func (f *flowFilter) matchMedia(addr netip.Addr, udp bool, port uint16) bool {
	inPorts := func(rs []config.PortRange) bool {
		return slices.ContainsFunc(rs, func(r config.PortRange) bool { return r.Contains(port) })
	}
	if slices.ContainsFunc(f.prefixes, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		if !f.udpOnly || (udp && inPorts(f.ports)) {
			return true
		}
	}
	if udp && inPorts(f.portOnly) {
		return !slices.ContainsFunc(f.corporate, func(p netip.Prefix) bool { return p.Contains(addr) })
	}
	return false
}

// merge adds g's selections to f.
func (f *flowFilter) merge(g *flowFilter) {
	for _, p := range g.prefixes {
		if !slices.Contains(f.prefixes, p) {
			f.prefixes = append(f.prefixes, p)
		}
	}
	if len(g.portOnly) > 0 {
		f.portOnly = g.portOnly
	}
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
