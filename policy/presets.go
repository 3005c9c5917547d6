package policy

import (
	"net/netip"
	"sort"

	"github.com/mediaedge/mediaedge/internal/config"
)

// Preset is a built-in media set: the published media prefixes and UDP
// ports of one meeting service, with where and when they were published.
// Presets are data, not authority: services change their ranges, so the
// source is part of every preset and docs/policy.md says how to refresh it.
type Preset struct {
	// Name is the key used in media.presets.
	Name string
	// Service is the product the set belongs to.
	Service string
	// Prefixes are the media destinations (nil for port-only presets).
	Prefixes []netip.Prefix
	// UDPPorts are the media ports to those prefixes.
	UDPPorts []config.PortRange
	// PortOnlyUDPPorts are ports the service uses towards any address: it
	// publishes no media prefixes.
	PortOnlyUDPPorts []config.PortRange
	// Source is the publication the values come from.
	Source string
	// Published is the date of that publication (or of the copy read).
	Published string
	// Note says how confident the values are and what to check.
	Note string
}

var presets = []Preset{
	{
		Name:    "teams",
		Service: "Microsoft Teams (Microsoft 365 endpoint set 11, category Optimize)",
		Prefixes: prefixes(
			"52.112.0.0/14", "52.122.0.0/15", "2603:1063::/38",
		),
		UDPPorts:  ports(pr(3478, 3481)),
		Source:    "https://learn.microsoft.com/en-us/microsoft-365/enterprise/urls-and-ip-address-ranges (endpoint set 11)",
		Published: "2026-08-14",
		Note: "Microsoft publishes changes 30 days ahead through its endpoint web service; " +
			"prefer `mediaedge policy import-m365` and media.file to this preset.",
	},
	{
		Name:    "zoom",
		Service: "Zoom Meetings",
		Prefixes: prefixes(
			"8.5.128.0/23", "144.195.0.0/16", "147.124.96.0/19", "149.137.0.0/17",
			"159.124.0.0/16", "170.114.0.0/16", "173.231.80.0/20", "198.251.128.0/17",
			"204.80.104.0/21", "206.247.0.0/16", "209.9.211.0/24",
		),
		UDPPorts:  ports(pr(3478, 3479), pr(8801, 8810)),
		Source:    "https://support.zoom.com/hc/en/article?id=zm_kb&sysparm_article=KB0060548 and https://assets.zoom.us/docs/ipranges/ZoomMeetings.txt",
		Published: "2026-11-27",
		Note: "Zoom-owned blocks only: Zoom's list also holds cloud-provider ranges that change often. " +
			"Ports confident; prefixes medium confidence. Fetch ZoomMeetings.txt into media.prefixes for completeness.",
	},
	{
		Name:    "webex",
		Service: "Cisco Webex Meetings media",
		Prefixes: prefixes(
			"23.89.0.0/16", "62.109.192.0/18", "64.68.96.0/19", "66.163.32.0/19",
			"69.26.160.0/19", "114.29.192.0/19", "144.196.0.0/16", "150.253.128.0/17",
			"163.129.0.0/16", "170.72.0.0/16", "170.133.128.0/18", "173.39.224.0/19",
			"173.243.0.0/20", "207.182.160.0/19", "209.197.192.0/19", "210.4.192.0/20",
			"216.151.128.0/19",
		),
		UDPPorts:  ports(pr(5004, 5004), pr(9000, 9000)),
		Source:    "https://help.webex.com/article/WBX000028782 (Network Requirements for Webex Services, media subnets)",
		Published: "2026-11-27",
		Note: "IPv4 media subnets only (66.114.160.0/20 was withdrawn in 2025); the Azure-hosted /24s for Teams interop " +
			"and the IPv6 ranges are not included. The UDP ports were not confirmed against the current page: verify them.",
	},
	{
		Name:             "meet",
		Service:          "Google Meet",
		PortOnlyUDPPorts: ports(pr(3478, 3478), pr(19302, 19309)),
		Source:           "https://support.google.com/a/answer/1279090",
		Published:        "2026-11-27",
		Note: "Google publishes no Meet-only address list and allows these ports without IP limitation, " +
			"so Meet is steered by port: UDP to these ports goes direct for every destination outside corporate_prefixes.",
	},
}

// Presets returns the built-in media sets, sorted by name. The caller must
// not modify them.
func Presets() []Preset { return presets }

// PresetNames returns the names of the built-in media sets.
func PresetNames() []string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	sort.Strings(names)
	return names
}

func presetByName(name string) (Preset, bool) {
	for _, p := range presets {
		if p.Name == name {
			return p, true
		}
	}
	return Preset{}, false
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// pr is an inclusive UDP port range.
func pr(lo, hi uint16) config.PortRange { return config.PortRange{Min: lo, Max: hi} }

func ports(rs ...config.PortRange) []config.PortRange { return rs }
