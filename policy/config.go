package policy

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// DefaultYAML is the commented `policy:` section of the embedded default
// configuration (without the section key), as `mediaedge config default`
// prints it.
//
//go:embed default.yaml
var DefaultYAML string

// Mode is what the component does with the rule set: ModePlan or
// ModeEnforce.
type Mode string

// Values of Config.Mode.
const (
	// ModePlan computes the rule set and logs what would change, without
	// touching the kernel. It needs no privileges.
	ModePlan Mode = "plan"
	// ModeEnforce installs the rule set and guards it against drift.
	ModeEnforce Mode = "enforce"
)

// Match says which media traffic goes direct: MatchPrefix or MatchUDP.
type Match string

// Values of Config.Match.
const (
	// MatchPrefix sends all traffic to the media prefixes direct.
	MatchPrefix Match = "prefix"
	// MatchUDP sends only UDP to the media ports direct.
	MatchUDP Match = "udp"
)

// UplinkDown is what happens to media while the uplink is unusable:
// UplinkDownFallback or UplinkDownFailClosed.
type UplinkDown string

// Values of Config.OnUplinkDown.
const (
	// UplinkDownFallback lets media fall back to the VPN while the uplink is
	// unusable.
	UplinkDownFallback UplinkDown = "fallback"
	// UplinkDownFailClosed refuses media (unreachable) rather than let it
	// into the VPN.
	UplinkDownFailClosed UplinkDown = "fail_closed"
)

// StopAction is what the component does with its rule set when it stops:
// OnStopRemove or OnStopKeep.
type StopAction string

// Values of Config.OnStop.
const (
	// OnStopRemove deletes the rule set.
	OnStopRemove StopAction = "remove"
	// OnStopKeep leaves the rule set in the kernel.
	OnStopKeep StopAction = "keep"
)

// Family is an address family to route, as Config.Families names it.
type Family string

// Family names in Config.Families.
const (
	FamilyIPv4 Family = "ipv4"
	FamilyIPv6 Family = "ipv6"
)

// Kernel limits and the span of priorities the component owns.
const (
	// prioritySpan is how many rule priorities above Config.Priority belong
	// to mediaedge; rules inside it that are not ours are reported.
	prioritySpan = 100
	// The kernel's main rule: a rule at 32766 or above lands after main
	// (equal preferences keep insertion order) and is never reached.
	kernelMainPriority = 32766
	tableDefault       = 253
	tableMain          = 254
	tableLocal         = 255
)

// Config is the `policy` section of the configuration: which traffic is
// media, which uplink carries it, and how the rule set is laid out in the
// kernel. The zero value is not valid; start from DefaultConfig.
type Config struct {
	// Enabled turns the component on.
	Enabled bool `yaml:"enabled"`
	// Mode is ModePlan or ModeEnforce.
	Mode Mode `yaml:"mode"`
	// Uplink is the direct internet link that media leaves through.
	Uplink UplinkConfig `yaml:"uplink"`
	// Mark is the SO_MARK of mediaedge's own media sockets (relay.mark,
	// gateway.cloud.mark). 0 installs no fwmark rules.
	Mark config.Mark `yaml:"mark"`
	// Match is MatchPrefix or MatchUDP.
	Match Match `yaml:"match"`
	// Families lists the address families to route: "ipv4", "ipv6".
	Families []Family `yaml:"families"`
	// Media says which destinations are media.
	Media MediaConfig `yaml:"media"`
	// CorporatePrefixes never leave through the uplink from marked sockets
	// or port-only media: they are `throw` routes in the direct table, so
	// the lookup falls through to the VPN.
	CorporatePrefixes []config.Prefix `yaml:"corporate_prefixes"`
	// Tables are the routing table ids mediaedge fills.
	Tables TablesConfig `yaml:"tables"`
	// Priority is the first of the 100 rule priorities mediaedge uses.
	Priority int `yaml:"priority"`
	// Protocol is the routing protocol number stamped on every rule and
	// route mediaedge installs; it is how mediaedge recognises its own
	// objects. No other software on the host may use it.
	Protocol int `yaml:"protocol"`
	// OnUplinkDown is UplinkDownFallback or UplinkDownFailClosed.
	OnUplinkDown UplinkDown `yaml:"on_uplink_down"`
	// OnStop is OnStopRemove or OnStopKeep.
	OnStop StopAction `yaml:"on_stop"`
	// ReconcileInterval is the period of the full re-check that backs up
	// the event-driven repairs.
	ReconcileInterval config.Duration `yaml:"reconcile_interval"`
	// ConntrackFlush deletes the conntrack entries of media flows whose
	// path changed.
	ConntrackFlush bool `yaml:"conntrack_flush"`
}

// UplinkConfig names the direct uplink.
type UplinkConfig struct {
	// Interface is the uplink's name (wan0, eth1, ppp0).
	Interface string `yaml:"interface"`
	// Gateway4 and Gateway6 are the next hops on the uplink. Empty: learned
	// from the uplink's own routes in the main table.
	Gateway4 string `yaml:"gateway4"`
	Gateway6 string `yaml:"gateway6"`
}

// MediaConfig selects the media destinations.
type MediaConfig struct {
	// Presets are built-in media sets by name (see Presets).
	Presets []string `yaml:"presets"`
	// Prefixes are extra media prefixes, IPv4 and IPv6 mixed.
	Prefixes []config.Prefix `yaml:"prefixes"`
	// UDPPorts are extra media UDP ports (used with match: udp).
	UDPPorts []config.PortRange `yaml:"udp_ports"`
	// PortOnlyUDPPorts are UDP ports sent direct whatever the destination
	// (except CorporatePrefixes), for services that publish no prefixes.
	PortOnlyUDPPorts []config.PortRange `yaml:"port_only_udp_ports"`
	// File is a media file written by `mediaedge policy import-m365`,
	// re-read on every reload.
	File string `yaml:"file"`
}

// TablesConfig holds the two routing table ids.
type TablesConfig struct {
	// Media holds the media prefixes via the uplink, and no default route.
	Media int `yaml:"media"`
	// Direct holds a default route via the uplink and throw routes for the
	// corporate prefixes.
	Direct int `yaml:"direct"`
}

// DefaultConfig returns the documented defaults: disabled (a file that
// has no policy section runs none; the embedded default enables plan mode),
// plan mode, the Teams preset, tables 100 and 101, priorities from 1000,
// protocol 77.
func DefaultConfig() Config {
	return Config{
		Enabled:  false,
		Mode:     ModePlan,
		Match:    MatchPrefix,
		Families: []Family{FamilyIPv4, FamilyIPv6},
		Media:    MediaConfig{Presets: []string{"teams"}},
		CorporatePrefixes: []config.Prefix{
			{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
			{Prefix: netip.MustParsePrefix("172.16.0.0/12")},
			{Prefix: netip.MustParsePrefix("192.168.0.0/16")},
			{Prefix: netip.MustParsePrefix("100.64.0.0/10")},
			{Prefix: netip.MustParsePrefix("fc00::/7")},
		},
		Tables:            TablesConfig{Media: 100, Direct: 101},
		Priority:          1000,
		Protocol:          77,
		OnUplinkDown:      UplinkDownFallback,
		OnStop:            OnStopRemove,
		ReconcileInterval: config.Duration(30 * time.Second),
		ConntrackFlush:    true,
	}
}

// Validate implements config.Validator. It checks everything that does not
// need the kernel or the media file; problems carry paths relative to the
// section.
func (c *Config) Validate() error {
	var ps config.Problems
	switch c.Mode {
	case ModePlan, ModeEnforce:
	default:
		ps.Add("mode", "%q is not a mode (use plan or enforce)", c.Mode)
	}
	switch c.Match {
	case MatchPrefix, MatchUDP:
	default:
		ps.Add("match", "%q is not a match (use prefix or udp)", c.Match)
	}
	switch c.OnUplinkDown {
	case UplinkDownFallback, UplinkDownFailClosed:
	default:
		ps.Add("on_uplink_down", "%q is not valid (use fallback or fail_closed)", c.OnUplinkDown)
	}
	switch c.OnStop {
	case OnStopRemove, OnStopKeep:
	default:
		ps.Add("on_stop", "%q is not valid (use remove or keep)", c.OnStop)
	}
	c.validateUplink(&ps)
	c.validateFamilies(&ps)
	c.validateLayout(&ps)
	c.validateMedia(&ps)
	if c.ReconcileInterval.D() < time.Second || c.ReconcileInterval.D() > time.Hour {
		ps.Add("reconcile_interval", "%s is out of range (1s to 1h)", c.ReconcileInterval)
	}
	return ps.Err()
}

func (c *Config) validateUplink(ps *config.Problems) {
	name := c.Uplink.Interface
	switch {
	case name == "" && c.Mode == ModeEnforce:
		ps.Add("uplink.interface", "required in enforce mode: the interface of the direct internet uplink")
	case name != "" && !validIfName(name):
		ps.Add("uplink.interface", "%q is not a valid interface name", name)
	}
	for _, g := range []struct {
		key, val string
		v4       bool
	}{{"uplink.gateway4", c.Uplink.Gateway4, true}, {"uplink.gateway6", c.Uplink.Gateway6, false}} {
		if g.val == "" {
			continue
		}
		a, err := netip.ParseAddr(g.val)
		switch {
		case err != nil:
			ps.Add(g.key, "%q is not an IP address", g.val)
		case a.Is4In6():
			ps.Add(g.key, "%s is an IPv4-mapped IPv6 address; write it as IPv4", a)
		case g.v4 && !a.Is4():
			ps.Add(g.key, "%s is an IPv6 address; put it in uplink.gateway6", a)
		case !g.v4 && !a.Is6():
			ps.Add(g.key, "%s is an IPv4 address; put it in uplink.gateway4", a)
		case a.Zone() != "":
			ps.Add(g.key, "%s: write the gateway without a zone; the uplink is the zone", a)
		case !a.IsGlobalUnicast() && !a.IsLinkLocalUnicast():
			ps.Add(g.key, "%s cannot be a gateway", a)
		}
	}
}

func (c *Config) validateFamilies(ps *config.Problems) {
	if len(c.Families) == 0 {
		ps.Add("families", "list at least one of ipv4, ipv6")
	}
	seen := map[Family]bool{}
	for i, f := range c.Families {
		switch {
		case f != FamilyIPv4 && f != FamilyIPv6:
			ps.Add(config.Index("families", i), "%q is not a family (use ipv4 or ipv6)", f)
		case seen[f]:
			ps.Add(config.Index("families", i), "%s is listed twice", f)
		}
		seen[f] = true
	}
	if c.Uplink.Gateway4 != "" && !seen[FamilyIPv4] {
		ps.Add("uplink.gateway4", "set but ipv4 is not in families")
	}
	if c.Uplink.Gateway6 != "" && !seen[FamilyIPv6] {
		ps.Add("uplink.gateway6", "set but ipv6 is not in families")
	}
}

func (c *Config) validateLayout(ps *config.Problems) {
	for _, t := range []struct {
		key string
		id  int
	}{{"tables.media", c.Tables.Media}, {"tables.direct", c.Tables.Direct}} {
		switch {
		case t.id < 1 || t.id > 1<<31-1:
			ps.Add(t.key, "%d is out of range (1 to 2147483647)", t.id)
		case t.id == tableDefault || t.id == tableMain || t.id == tableLocal:
			ps.Add(t.key, "%d is a table of the kernel (default, main or local)", t.id)
		}
	}
	if c.Tables.Media == c.Tables.Direct {
		ps.Add("tables.direct", "must differ from tables.media (%d)", c.Tables.Media)
	}
	if c.Priority < 1 || c.Priority+prioritySpan > kernelMainPriority {
		ps.Add("priority", "%d is out of range (1 to %d): mediaedge uses %d priorities from it, all before the main rule at %d",
			c.Priority, kernelMainPriority-prioritySpan, prioritySpan, kernelMainPriority)
	}
	if c.Protocol < 1 || c.Protocol > 255 {
		ps.Add("protocol", "%d is out of range (1 to 255)", c.Protocol)
	} else if c.Protocol <= 4 || c.Protocol == 16 || c.Protocol == 186 {
		// 1-4 are redirect, kernel, boot, static; 16 is dhcp; 186 is bgp.
		// Owning any of them would make mediaedge delete others' routes.
		ps.Add("protocol", "%d belongs to the kernel or another routing daemon; pick a number of your own (default 77)", c.Protocol)
	}
}

func (c *Config) validateMedia(ps *config.Problems) {
	fams := c.familySet()
	seen := map[string]int{}
	for i, name := range c.Media.Presets {
		path := config.Index("media.presets", i)
		if _, ok := presetByName(name); !ok {
			ps.Add(path, "unknown preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
			continue
		}
		if j, dup := seen[name]; dup {
			ps.Add(path, "preset %s is listed twice (also media.presets[%d])", name, j)
			continue
		}
		seen[name] = i
	}
	for i, p := range c.Media.Prefixes {
		path := config.Index("media.prefixes", i)
		if err := checkPrefixFamily(p.Prefix, fams); err != nil {
			ps.AddErr(path, err)
		}
		if p.Bits() == 0 {
			ps.Add(path, "%s is a default route: media prefixes must be specific", p)
		}
	}
	for i, p := range c.CorporatePrefixes {
		if p.Addr().Is4In6() {
			ps.Add(config.Index("corporate_prefixes", i), "%s is IPv4-mapped IPv6; write it as IPv4", p)
		}
	}
	if c.Match == MatchUDP && len(c.Media.UDPPorts) == 0 && !presetsHavePorts(c.Media.Presets) && c.Media.File == "" {
		ps.Add("match", "udp needs media ports: select a preset with ports or set media.udp_ports")
	}
	// Overlaps between presets, extra prefixes and corporate prefixes are
	// checked on the assembled set, with the media file, when it is loaded;
	// here only what the configuration alone decides.
	if _, err := assembleMedia(c, nil); errors.Is(err, ErrOverlap) {
		ps.AddErr("media", err)
	}
}

// familySet returns which families are enabled.
func (c *Config) familySet() famSet {
	var s famSet
	for _, f := range c.Families {
		switch f {
		case FamilyIPv4:
			s.v4 = true
		case FamilyIPv6:
			s.v6 = true
		}
	}
	return s
}

// famSet says which address families are routed.
type famSet struct{ v4, v6 bool }

func (s famSet) has(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return s.v4
	}
	return s.v6
}

// checkPrefixFamily refuses IPv4-mapped IPv6 prefixes and prefixes of a
// family that is not routed.
func checkPrefixFamily(p netip.Prefix, fams famSet) error {
	switch {
	case p.Addr().Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 prefix; write it as IPv4", p)
	case p.Addr().Is4() && !fams.v4:
		return fmt.Errorf("%s is IPv4 but ipv4 is not in families", p)
	case p.Addr().Is6() && !fams.v6:
		return fmt.Errorf("%s is IPv6 but ipv6 is not in families", p)
	}
	return nil
}

// validIfName follows the kernel's dev_valid_name: 1 to 15 bytes, not "."
// or "..", no '/', ':' or white space.
func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n\r")
}

// rulePriorities returns the priorities of each rule class.
func (c *Config) rulePriorities() (mark, markDirect, fromUplink, media, portOnly int) {
	p := c.Priority
	return p, p + 1, p + 2, p + 10, p + 20
}

// ownsPriority reports whether pref is inside mediaedge's range.
func (c *Config) ownsPriority(pref int) bool {
	return pref >= c.Priority && pref < c.Priority+prioritySpan
}

func presetsHavePorts(names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool {
		p, ok := presetByName(n)
		return ok && len(p.UDPPorts) > 0
	})
}
