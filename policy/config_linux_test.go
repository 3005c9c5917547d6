package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mediaedge/mediaedge/internal/config"
)

// TestDefaultYAML checks that the embedded default section decodes to
// DefaultConfig exactly: the commented file and the Go defaults cannot
// drift apart.
func TestDefaultYAML(t *testing.T) {
	var got Config
	if err := config.Decode([]byte(DefaultYAML), &got, config.Options{}); err != nil {
		t.Fatalf("embedded default: %v", err)
	}
	// Compared as printed: an empty list in the file and a nil default
	// mean the same.
	want := DefaultConfig()
	want.Enabled = true // the embedded default turns plan mode on
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("embedded default decodes to\n%+v\nwant DefaultConfig()\n%+v", got, want)
	}
	if got.Mode != ModePlan || got.Mark != 0 {
		t.Errorf("the embedded default must run without root: mode %q, mark %v", got.Mode, got.Mark)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// want are "path: message fragment" problems; none means valid.
		want []string
	}{
		{name: "defaults", yaml: ""},
		{name: "enforce with an uplink", yaml: "mode: enforce\nuplink: {interface: wan0}\nmark: 0x4d45"},
		{name: "enforce needs an uplink", yaml: "mode: enforce", want: []string{"uplink.interface: required in enforce mode"}},
		{name: "bad enums", yaml: "mode: on\nmatch: tcp\non_uplink_down: drop\non_stop: never",
			want: []string{"mode: \"on\" is not a mode", "match: \"tcp\"", "on_uplink_down: \"drop\"", "on_stop: \"never\""}},
		{name: "interface name", yaml: "uplink: {interface: \"wan0:1\"}", want: []string{"uplink.interface: \"wan0:1\" is not a valid interface name"}},
		{name: "gateway of the wrong family", yaml: "uplink: {interface: wan0, gateway4: \"2001:db8::1\", gateway6: 192.0.2.1}",
			want: []string{"uplink.gateway4: 2001:db8::1 is an IPv6 address", "uplink.gateway6: 192.0.2.1 is an IPv4 address"}},
		{name: "mapped gateway", yaml: "uplink: {gateway4: \"::ffff:192.0.2.1\"}", want: []string{"IPv4-mapped"}},
		{name: "gateway not an address", yaml: "uplink: {gateway4: router}", want: []string{"uplink.gateway4: \"router\" is not an IP address"}},
		{name: "prefix of an unrouted family", yaml: "families: [ipv4]\nmedia: {prefixes: [\"2001:db8::/32\"]}",
			want: []string{"media.prefixes[0]: 2001:db8::/32 is IPv6 but ipv6 is not in families"}},
		{name: "gateway of an unrouted family", yaml: "families: [ipv6]\nuplink: {gateway4: 192.0.2.1}", want: []string{"uplink.gateway4: set but ipv4 is not in families"}},
		{name: "families", yaml: "families: [ipv4, ipv4, ipx]", want: []string{"families[1]: ipv4 is listed twice", "families[2]: \"ipx\""}},
		{name: "no families", yaml: "families: []", want: []string{"families: list at least one"}},
		{name: "kernel tables", yaml: "tables: {media: 254, direct: 0}", want: []string{"tables.media: 254 is a table of the kernel", "tables.direct: 0 is out of range"}},
		{name: "same tables", yaml: "tables: {media: 100, direct: 100}", want: []string{"tables.direct: must differ"}},
		{name: "priority after main", yaml: "priority: 32700", want: []string{"priority: 32700 is out of range"}},
		{name: "someone else's protocol", yaml: "protocol: 16", want: []string{"protocol: 16 belongs to the kernel or another routing daemon"}},
		{name: "unknown preset", yaml: "media: {presets: [skype]}", want: []string{"media.presets[0]: unknown preset \"skype\" (known: meet, teams, webex, zoom)"}},
		{name: "preset twice", yaml: "media: {presets: [zoom, teams, zoom]}", want: []string{"media.presets[2]: preset zoom is listed twice"}},
		{name: "prefix inside a preset", yaml: "media: {prefixes: [52.113.0.0/16]}",
			want: []string{"media: policy: overlapping prefixes: 52.112.0.0/14 (preset teams) and 52.113.0.0/16 (media.prefixes[0])"}},
		{name: "media prefix in a corporate range", yaml: "media: {presets: [], prefixes: [10.1.0.0/16]}",
			want: []string{"media prefix 10.1.0.0/16 (media.prefixes[0]) overlaps corporate prefix 10.0.0.0/8"}},
		{name: "default as media", yaml: "media: {presets: [], prefixes: [0.0.0.0/0]}", want: []string{"media.prefixes[0]: 0.0.0.0/0 is a default route"}},
		{name: "udp match without ports", yaml: "match: udp\nmedia: {presets: [], prefixes: [192.0.2.0/24]}", want: []string{"match: udp needs media ports"}},
		{name: "udp match with a file may get ports from it", yaml: "match: udp\nmedia: {presets: [], file: /x.json}"},
		{name: "interval", yaml: "reconcile_interval: 100ms", want: []string{"reconcile_interval: 100ms is out of range"}},
		{name: "port-only ranges", yaml: "media: {presets: [], port_only_udp_ports: [\"19302-19309\"]}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			err := config.Decode([]byte(tt.yaml), &cfg, config.Options{})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want problems %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems:\n%v\ndo not mention %q", err, w)
				}
			}
		})
	}
}

func TestPresetsAreWellFormed(t *testing.T) {
	for _, p := range Presets() {
		if p.Source == "" || p.Published == "" || p.Service == "" || p.Note == "" {
			t.Errorf("preset %s lacks its source, date, service or note", p.Name)
		}
		if len(p.Prefixes) == 0 && len(p.PortOnlyUDPPorts) == 0 {
			t.Errorf("preset %s selects nothing", p.Name)
		}
		for _, r := range append(p.UDPPorts, p.PortOnlyUDPPorts...) {
			if r.Min == 0 || r.Max < r.Min {
				t.Errorf("preset %s: bad port range %v", p.Name, r)
			}
		}
		cfg := DefaultConfig()
		cfg.Media.Presets = []string{p.Name}
		if err := cfg.Validate(); err != nil {
			t.Errorf("preset %s alone: %v", p.Name, err)
		}
	}
	// All presets together must not overlap each other.
	cfg := DefaultConfig()
	cfg.Media.Presets = PresetNames()
	if err := cfg.Validate(); err != nil {
		t.Errorf("all presets together: %v", err)
	}
}

func TestMergePorts(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"3478 3479 3480 3481", "3478-3481"},
		{"8801-8810 3478-3479 3478-3481", "3478-3481 8801-8810"},
		{"1-10 11-20 30", "1-20 30"},
		{"65535 65534-65535 1", "1 65534-65535"},
	}
	for _, tt := range tests {
		var in []config.PortRange
		for _, f := range strings.Fields(tt.in) {
			r, err := config.ParsePortRange(f)
			if err != nil {
				t.Fatal(err)
			}
			in = append(in, r)
		}
		if got := strings.Join(portsString(mergePorts(in)), " "); got != tt.want {
			t.Errorf("mergePorts(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
