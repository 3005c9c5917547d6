package relay

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

func TestConfigValidate(t *testing.T) {
	lis := func(transport Transport, addr string) ListenerConfig {
		return ListenerConfig{Transport: transport, Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort(addr)}}
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string // "" = valid
	}{
		{"base", func(*Config) {}, ""},
		{"same address twice", func(c *Config) {
			c.Listeners = []ListenerConfig{lis("udp", "127.0.0.1:3478"), lis("udp", "127.0.0.1:3478")}
		}, "listeners[1]: same address as listeners[0]"},
		{"udp and tcp may share a port", func(c *Config) {
			c.Listeners = []ListenerConfig{lis("udp", "127.0.0.1:3478"), lis("tcp", "127.0.0.1:3478")}
		}, ""},
		{"any free port never collides", func(c *Config) {
			c.Listeners = []ListenerConfig{lis("tcp", "127.0.0.1:0"), lis("tcp", "127.0.0.1:0")}
		}, ""},
		{"no listener", func(c *Config) { c.Listeners = nil }, "listeners: at least one listener is needed"},
		{"empty realm", func(c *Config) { c.Realm = "" }, "realm: must not be empty"},
		{"coalesce too long", func(c *Config) { c.Coalesce = config.Duration(3 * time.Millisecond) }, "coalesce: 3ms is outside 0s to 2ms"},
		{"fast_path unknown", func(c *Config) { c.FastPath = "always" }, `fast_path: "always" is not off, auto or on`},
		{"relay_ip of the wrong family", func(c *Config) { c.RelayIP = "::1" }, "relay_ip: ::1 is not an IPv4 address"},
		{"unspecified advertised address", func(c *Config) { c.RelayAddress = "0.0.0.0" }, "relay_address: an advertised address cannot be unspecified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(t)
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestNewAndReloadValidate checks that the constructor and Reload refuse
// what Validate refuses instead of trusting their caller.
func TestNewAndReloadValidate(t *testing.T) {
	bad := baseConfig(t)
	bad.Coalesce = config.Duration(3 * time.Millisecond)
	if _, err := New(bad, testDeps()); err == nil || !strings.Contains(err.Error(), "coalesce") {
		t.Fatalf("New(coalesce 3ms) = %v, want a coalesce problem", err)
	}
	r := startRelay(t, baseConfig(t))
	if err := r.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "coalesce") {
		t.Fatalf("Reload(coalesce 3ms) = %v, want a coalesce problem", err)
	}
	if got := time.Duration(r.coalesce.Load()); got == 3*time.Millisecond {
		t.Errorf("refused Reload applied coalesce %s", got)
	}
}
