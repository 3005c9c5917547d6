package policy

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mediaedge/mediaedge/internal/config"
)

// testConfig is the enforce-mode configuration most tests start from.
func testConfig() Config {
	c := DefaultConfig()
	c.Mode = ModeEnforce
	c.Uplink.Interface = "wan0"
	c.Mark = 0x4d45
	return c
}

// desiredText renders the rule set for cfg on k.
func desiredText(t *testing.T, cfg Config, k *fakeKernel) string {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	media, err := assembleMedia(&cfg, nil)
	if err != nil {
		t.Fatalf("media: %v", err)
	}
	r := &reconciler{h: k}
	var mem gwMemory
	up, err := r.resolveUplink(&cfg, &mem)
	if err != nil {
		t.Fatalf("uplink: %v", err)
	}
	d := desire(&cfg, &media, &up)
	return d.render(k.namesLocked())
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

func TestDesire(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		fake func(*fakeKernel)
		want string
	}{
		{
			name: "teams prefix mode with mark, gateways learned from main",
			want: lines(
				"-4 1000:\tfrom all fwmark 0x4d45 lookup main suppress_prefixlength 0 proto 77",
				"-4 1001:\tfrom all fwmark 0x4d45 lookup 101 proto 77",
				"-4 1002:\tfrom 198.51.100.2 lookup 101 proto 77",
				"-4 1010:\tfrom all lookup 100 proto 77",
				"-6 1000:\tfrom all fwmark 0x4d45 lookup main suppress_prefixlength 0 proto 77",
				"-6 1001:\tfrom all fwmark 0x4d45 lookup 101 proto 77",
				"-6 1002:\tfrom 2001:db8:100::2 lookup 101 proto 77",
				"-6 1010:\tfrom all lookup 100 proto 77",
				"-4 52.112.0.0/14 via 198.51.100.1 dev wan0 table 100 proto 77 metric 1024",
				"-4 52.122.0.0/15 via 198.51.100.1 dev wan0 table 100 proto 77 metric 1024",
				"-4 default via 198.51.100.1 dev wan0 table 101 proto 77 metric 1024",
				"-4 throw 10.0.0.0/8 table 101 proto 77 metric 1024",
				"-4 throw 172.16.0.0/12 table 101 proto 77 metric 1024",
				"-4 throw 192.168.0.0/16 table 101 proto 77 metric 1024",
				"-4 throw 100.64.0.0/10 table 101 proto 77 metric 1024",
				"-6 2603:1063::/38 via 2001:db8:100::1 dev wan0 table 100 proto 77 metric 1024",
				"-6 default via 2001:db8:100::1 dev wan0 table 101 proto 77 metric 1024",
				"-6 throw fc00::/7 table 101 proto 77 metric 1024",
			),
		},
		{
			name: "udp match with teams and zoom merges the ports",
			cfg: func(c *Config) {
				c.Match = MatchUDP
				c.Media.Presets = []string{"teams", "zoom"}
				c.Families = []Family{FamilyIPv4}
				c.Mark = 0
				c.Uplink.Gateway4 = "198.51.100.254"
			},
			want: lines(
				"-4 1002:\tfrom 198.51.100.2 lookup 101 proto 77",
				"-4 1010:\tfrom all ipproto udp dport 3478-3481 lookup 100 proto 77",
				"-4 1010:\tfrom all ipproto udp dport 8801-8810 lookup 100 proto 77",
				"-4 8.5.128.0/23 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 52.112.0.0/14 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 52.122.0.0/15 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 144.195.0.0/16 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 147.124.96.0/19 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 149.137.0.0/17 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 159.124.0.0/16 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 170.114.0.0/16 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 173.231.80.0/20 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 198.251.128.0/17 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 204.80.104.0/21 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 206.247.0.0/16 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 209.9.211.0/24 via 198.51.100.254 dev wan0 table 100 proto 77 metric 1024",
				"-4 default via 198.51.100.254 dev wan0 table 101 proto 77 metric 1024",
				"-4 throw 10.0.0.0/8 table 101 proto 77 metric 1024",
				"-4 throw 172.16.0.0/12 table 101 proto 77 metric 1024",
				"-4 throw 192.168.0.0/16 table 101 proto 77 metric 1024",
				"-4 throw 100.64.0.0/10 table 101 proto 77 metric 1024",
			),
		},
		{
			name: "fail closed adds unreachable twins below every direct route",
			cfg: func(c *Config) {
				c.OnUplinkDown = UplinkDownFailClosed
				c.Families = []Family{FamilyIPv6}
				c.CorporatePrefixes = nil
				c.Priority, c.Tables = 2000, TablesConfig{Media: 300, Direct: 301}
			},
			want: lines(
				"-6 2000:\tfrom all fwmark 0x4d45 lookup main suppress_prefixlength 0 proto 77",
				"-6 2001:\tfrom all fwmark 0x4d45 lookup 301 proto 77",
				"-6 2002:\tfrom 2001:db8:100::2 lookup 301 proto 77",
				"-6 2010:\tfrom all lookup 300 proto 77",
				"-6 2603:1063::/38 via 2001:db8:100::1 dev wan0 table 300 proto 77 metric 1024",
				"-6 unreachable 2603:1063::/38 table 300 proto 77 metric 4000000000",
				"-6 default via 2001:db8:100::1 dev wan0 table 301 proto 77 metric 1024",
				"-6 unreachable default table 301 proto 77 metric 4000000000",
			),
		},
		{
			name: "uplink down with fallback keeps rules and throws, drops routes via the uplink",
			cfg:  func(c *Config) { c.Families = []Family{FamilyIPv4}; c.Mark = 0 },
			fake: func(k *fakeKernel) { k.setLink("wan0", false, false) },
			want: lines(
				"-4 1002:\tfrom 198.51.100.2 lookup 101 proto 77",
				"-4 1010:\tfrom all lookup 100 proto 77",
				"-4 throw 10.0.0.0/8 table 101 proto 77 metric 1024",
				"-4 throw 172.16.0.0/12 table 101 proto 77 metric 1024",
				"-4 throw 192.168.0.0/16 table 101 proto 77 metric 1024",
				"-4 throw 100.64.0.0/10 table 101 proto 77 metric 1024",
			),
		},
		{
			name: "carrier loss is treated as down: fail closed leaves only the twins",
			cfg: func(c *Config) {
				c.Families = []Family{FamilyIPv4}
				c.Mark = 0
				c.OnUplinkDown = UplinkDownFailClosed
				c.CorporatePrefixes = nil
			},
			fake: func(k *fakeKernel) { k.setLink("wan0", true, false) },
			want: lines(
				"-4 1002:\tfrom 198.51.100.2 lookup 101 proto 77",
				"-4 1010:\tfrom all lookup 100 proto 77",
				"-4 unreachable 52.112.0.0/14 table 100 proto 77 metric 4000000000",
				"-4 unreachable 52.122.0.0/15 table 100 proto 77 metric 4000000000",
				"-4 unreachable default table 101 proto 77 metric 4000000000",
			),
		},
		{
			name: "meet is port-only: UDP ports to the direct table",
			cfg: func(c *Config) {
				c.Media.Presets = []string{"meet"}
				c.Families = []Family{FamilyIPv4}
				c.Mark = 0
				c.CorporatePrefixes = []config.Prefix{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
			},
			want: lines(
				"-4 1002:\tfrom 198.51.100.2 lookup 101 proto 77",
				"-4 1020:\tfrom all ipproto udp dport 3478 lookup 101 proto 77",
				"-4 1020:\tfrom all ipproto udp dport 19302-19309 lookup 101 proto 77",
				"-4 default via 198.51.100.1 dev wan0 table 101 proto 77 metric 1024",
				"-4 throw 10.0.0.0/8 table 101 proto 77 metric 1024",
			),
		},
		{
			name: "point-to-point uplink without gateway routes by device",
			cfg: func(c *Config) {
				c.Uplink.Interface = "ppp0"
				c.Families = []Family{FamilyIPv4}
				c.Mark = 0
				c.CorporatePrefixes = nil
				c.Media.Presets = nil
				c.Media.Prefixes = []config.Prefix{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}
			},
			fake: func(k *fakeKernel) {
				idx := k.addLink("ppp0", net.FlagUp|net.FlagRunning|net.FlagPointToPoint)
				k.addAddr(idx, "198.51.100.77/32")
			},
			want: lines(
				"-4 1002:\tfrom 198.51.100.77 lookup 101 proto 77",
				"-4 1010:\tfrom all lookup 100 proto 77",
				"-4 192.0.2.0/24 dev ppp0 table 100 proto 77 metric 1024",
				"-4 default dev ppp0 table 101 proto 77 metric 1024",
			),
		},
		{
			name: "no gateway known: the family is unusable",
			cfg: func(c *Config) {
				c.Families = []Family{FamilyIPv6}
				c.Mark = 0
				c.CorporatePrefixes = nil
			},
			fake: func(k *fakeKernel) {
				k.mu.Lock()
				k.routes = nil // no routes via the uplink in main
				k.mu.Unlock()
			},
			want: lines(
				"-6 1002:\tfrom 2001:db8:100::2 lookup 101 proto 77",
				"-6 1010:\tfrom all lookup 100 proto 77",
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel()
			k.uplink()
			if tt.fake != nil {
				tt.fake(k)
			}
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if got := desiredText(t, cfg, k); got != tt.want {
				t.Errorf("desired state:\n%s\nwant:\n%s\ndiff:\n%s", got, tt.want, lineDiff(tt.want, got))
			}
		})
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w, g := map[string]int{}, map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		w[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		g[l]++
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if g[l] < w[l] {
			b.WriteString("- " + l + "\n")
			w[l]--
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if w[l] < g[l] {
			b.WriteString("+ " + l + "\n")
			g[l]--
		}
	}
	return b.String()
}
