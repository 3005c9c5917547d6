package gateway

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
)

func TestDefaultYAMLIsDefaultConfig(t *testing.T) {
	got := DefaultConfig()
	got.Internal.Suites, got.Cloud.Suites = nil, nil // the file must set them
	if err := config.Decode([]byte(DefaultYAML), &got, config.Options{}); err != nil {
		t.Fatalf("DefaultYAML: %v", err)
	}
	want := DefaultConfig()
	want.Enabled = true               // the embedded default turns the gateway on
	want.NG.Listen = "127.0.0.1:2224" // and the ng listener, on loopback
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultYAML decodes to\n%+v\nwant DefaultConfig()\n%+v", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string // problem paths, in order
	}{
		{"defaults", "", nil},
		{"shared ports, gcm only", "internal: {port_mode: shared, suites: [AEAD_AES_128_GCM]}", nil},
		{"bad workers and limits", "workers: -1\nmax_sessions: 0\nbatch: 5000\nmax_ssrcs: 0",
			[]string{"workers", "max_sessions", "batch", "max_ssrcs"}},
		{"bad bind", "internal: {bind: eth0}", []string{"internal.bind"}},
		{"hostname bind", "cloud: {bind: localhost}", []string{"cloud.bind"}},
		{"port mode", "cloud: {port_mode: pooled}", []string{"cloud.port_mode"}},
		{"unknown suite", "internal: {suites: [AES_CM_128_HMAC_SHA1_80, F8_128_HMAC_SHA1_80]}", []string{"internal.suites[1]"}},
		{"null suite not allowed", "internal: {suites: [NULL_HMAC_SHA1_80]}", []string{"internal.suites[0]"}},
		{"null suite allowed", "internal: {suites: [NULL_HMAC_SHA1_80], allow_null_cipher: true}", nil},
		{"no suites", "cloud: {suites: []}", []string{"cloud.suites"}},
		{"plain only", "cloud: {suites: [], allow_plain: true}", nil},
		{"overlap", "internal: {ports: 40000-45500}", []string{"cloud.ports"}},
		{"overlap other address is fine", "internal: {ports: 40000-45500, bind: 127.0.0.2}", nil},
		{"policies", "cloud: {roc: zero, on_key_exhausted: panic, key_lifetime: 3, rekey_interval: 10ms, rekey_packets: 2, replay_window: 10}",
			[]string{"cloud.replay_window", "cloud.roc", "cloud.key_lifetime", "cloud.on_key_exhausted", "cloud.rekey_interval", "cloud.rekey_packets"}},
		{"ng on", "ng: {listen: 127.0.0.1:2224, allowed_sources: [10.0.0.0/8]}", nil},
		{"ng unknown key", "ng: {direction_default: x}", []string{"ng"}},
		{"ng bad values", "ng: {listen: localhost:2224, listen_tcp: nope, allowed_sources: [10.0.0.300/8], max_request: 100, rate_per_source: 0, reply_cache: 0s, reply_cache_size: 1, offer_timeout: 0s}",
			[]string{"ng.listen", "ng.listen_tcp", "ng.allowed_sources[0]", "ng.max_request", "ng.rate_per_source", "ng.reply_cache", "ng.reply_cache_size", "ng.offer_timeout"}},
		{"ng shared ports need shared legs", "ng: {port_mode: shared}\ninternal: {port_mode: dedicated}", []string{"ng.port_mode"}},
		{"ng shared ports", "ng: {port_mode: shared}", nil},
		{"ng shared ports and ice-lite", "ng: {port_mode: shared}\ncloud: {ice_lite: true}", []string{"ng.port_mode"}},
		{"ng directions", "ng: {internal_interface: lan, cloud_interface: lan, default_direction: [lan, wan]}", []string{"ng.cloud_interface", "ng.default_direction"}},
		{"ng direction mapped", "ng: {internal_interface: lan, cloud_interface: wan, default_direction: [wan, lan]}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			err := config.Decode([]byte(tc.yaml), &cfg, config.Options{})
			var got []string
			if err != nil {
				var ps config.Problems
				ok := errors.As(err, &ps)
				if !ok {
					t.Fatalf("err = %v, want config.Problems", err)
				}
				for _, p := range ps {
					got = append(got, p.Path)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("problems at %v, want %v (%v)", got, tc.want, err)
			}
		})
	}
}

// TestNewAndReloadValidate checks that the constructor and Reload refuse
// what Validate refuses instead of trusting their caller, and accept a leg
// without a port range (any free port), which only a file must give.
func TestNewAndReloadValidate(t *testing.T) {
	bad := testConfig()
	bad.Cloud.PortMode = "pooled"
	if _, err := New(bad, component.Deps{}); err == nil || !strings.Contains(err.Error(), "cloud.port_mode") {
		t.Fatalf("New(port_mode pooled) = %v, want a cloud.port_mode problem", err)
	}
	g, err := New(testConfig(), component.Deps{})
	if err != nil {
		t.Fatalf("New(ports 0-0) = %v, want it accepted", err)
	}
	defer g.Close()
	if err := g.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "cloud.port_mode") {
		t.Fatalf("Reload(port_mode pooled) = %v, want a cloud.port_mode problem", err)
	}
	if got := g.cfg.Load().Cloud.PortMode; got != PortsShared {
		t.Errorf("refused Reload changed port_mode to %q", got)
	}
	cfg := testConfig()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "internal.ports") {
		t.Errorf("Validate(ports 0-0) = %v, want an internal.ports problem", err)
	}
}
