package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mediaedge/mediaedge/internal/config"
)

// MediaSet is the assembled media selection: presets, extra prefixes and
// the media file, restricted to the routed families, checked for overlaps.
// It is a value; nothing in it changes after assembleMedia returns it.
type MediaSet struct {
	// Prefixes are the media destinations, IPv4 first, sorted.
	Prefixes []netip.Prefix
	// UDPPorts are the media ports towards Prefixes, merged.
	UDPPorts []config.PortRange
	// PortOnly are UDP ports sent direct whatever the destination.
	PortOnly []config.PortRange
	// Sources names where the set came from, for status and logs.
	Sources []string
}

// family returns the prefixes of one family (4 or 6).
func (m *MediaSet) family(v4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range m.Prefixes {
		if p.Addr().Is4() == v4 {
			out = append(out, p)
		}
	}
	return out
}

// origin is a media prefix and where it was configured.
type origin struct {
	p    netip.Prefix
	from string
}

// assembleMedia builds the media set of cfg and, when not nil, of the loaded
// media file. It fails with ErrOverlap when two sources overlap or a media
// prefix overlaps a corporate prefix: overlapping sets are almost always a
// configuration mistake (the same service listed twice, or a hand-written
// prefix that a preset already covers), and a corporate prefix in a media
// set would send corporate traffic out of the uplink.
func assembleMedia(cfg *Config, file *MediaFile) (MediaSet, error) {
	fams := cfg.familySet()
	var (
		items    []origin
		set      MediaSet
		udp      []config.PortRange
		portOnly []config.PortRange
	)
	seen := map[string]bool{}
	for _, name := range cfg.Media.Presets {
		p, ok := presetByName(name)
		if !ok || seen[name] {
			continue // reported by Validate
		}
		seen[name] = true
		for _, pfx := range p.Prefixes {
			if fams.has(pfx) {
				items = append(items, origin{pfx, "preset " + name})
			}
		}
		udp = append(udp, p.UDPPorts...)
		portOnly = append(portOnly, p.PortOnlyUDPPorts...)
		set.Sources = append(set.Sources, fmt.Sprintf("preset %s (%s, published %s)", name, p.Service, p.Published))
	}
	for i, p := range cfg.Media.Prefixes {
		if checkPrefixFamily(p.Prefix, fams) == nil {
			items = append(items, origin{p.Prefix, config.Index("media.prefixes", i)})
		}
	}
	if len(cfg.Media.Prefixes) > 0 {
		set.Sources = append(set.Sources, "media.prefixes")
	}
	udp = append(udp, cfg.Media.UDPPorts...)
	portOnly = append(portOnly, cfg.Media.PortOnlyUDPPorts...)
	if file != nil {
		for _, p := range file.prefixes {
			if fams.has(p) {
				items = append(items, origin{p, "media.file"})
			}
		}
		udp = append(udp, file.udpPorts...)
		set.Sources = append(set.Sources, file.describe())
	}

	slices.SortFunc(items, func(a, b origin) int { return comparePrefix(a.p, b.p) })
	var errs []error
	// CIDR blocks either nest or are disjoint, so in this order a block that
	// overlaps any earlier one overlaps the one just before it.
	for i := 1; i < len(items); i++ {
		if items[i].p.Overlaps(items[i-1].p) {
			errs = append(errs, fmt.Errorf("%w: %s (%s) and %s (%s)", ErrOverlap,
				items[i-1].p, items[i-1].from, items[i].p, items[i].from))
		}
	}
	for _, it := range items {
		for _, c := range cfg.CorporatePrefixes {
			if it.p.Overlaps(c.Prefix) {
				errs = append(errs, fmt.Errorf("%w: media prefix %s (%s) overlaps corporate prefix %s, which must never leave through the uplink",
					ErrOverlap, it.p, it.from, c.Prefix))
			}
		}
	}
	if len(errs) > 0 {
		return MediaSet{}, errors.Join(errs...)
	}
	for _, it := range items {
		set.Prefixes = append(set.Prefixes, it.p)
	}
	set.UDPPorts = mergePorts(udp)
	set.PortOnly = mergePorts(portOnly)
	if cfg.Match == MatchUDP && len(set.Prefixes) > 0 && len(set.UDPPorts) == 0 {
		return MediaSet{}, errors.New("policy: match udp needs media ports, and none of the media sources has any")
	}
	return set, nil
}

// comparePrefix orders IPv4 before IPv6, then by address, then shorter
// prefixes first.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// mergePorts returns the union of rs as sorted, non-overlapping,
// non-adjacent ranges.
func mergePorts(rs []config.PortRange) []config.PortRange {
	if len(rs) == 0 {
		return nil
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b config.PortRange) int {
		return cmp.Or(cmp.Compare(a.Min, b.Min), cmp.Compare(a.Max, b.Max))
	})
	out := []config.PortRange{s[0]}
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if uint32(r.Min) <= uint32(last.Max)+1 {
			last.Max = max(last.Max, r.Max)
			continue
		}
		out = append(out, r)
	}
	return out
}
