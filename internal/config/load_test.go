package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testRoot is a small configuration tree exercising every kind of value the
// loader handles.
type testRoot struct {
	Relay testRelay `yaml:"relay"`
	Log   testLog   `yaml:"log"`
}

type testRelay struct {
	Enabled  bool              `yaml:"enabled"`
	Realm    string            `yaml:"realm"`
	Listen   []AddrPort        `yaml:"listen"`
	Ports    PortRange         `yaml:"ports"`
	Lifetime Duration          `yaml:"lifetime"`
	Quota    uint16            `yaml:"quota"`
	Ratio    int8              `yaml:"ratio"`
	Mark     Mark              `yaml:"mark"`
	Peers    []Prefix          `yaml:"allowed_peers"`
	Users    map[string]string `yaml:"users"`
	Secret   SecretFile        `yaml:"secret_file"`
	Buffer   ByteSize          `yaml:"buffer"`
	Rate     Bitrate           `yaml:"rate"`
	Tuning   testTuning        `yaml:",inline"`
}

type testTuning struct {
	Workers int `yaml:"workers"`
}

func (r *testRelay) Validate() error {
	var ps Problems
	if r.Enabled && len(r.Listen) == 0 {
		ps.Add("listen", "at least one address is required when enabled")
	}
	if r.Quota > 1000 {
		ps.Add("quota", "%d is more than 1000", r.Quota)
	}
	return ps.Err()
}

type testLog struct {
	Level string `yaml:"level"`
}

func (l testLog) Validate() error {
	if l.Level != "info" && l.Level != "debug" {
		return fmt.Errorf("level %q is not info or debug", l.Level)
	}
	return nil
}

func defaults() testRoot {
	return testRoot{Log: testLog{Level: "info"}, Relay: testRelay{Realm: "example.org", Lifetime: Duration(10 * time.Minute)}}
}

func decode(t *testing.T, src string) (testRoot, error) {
	t.Helper()
	cfg := defaults()
	err := Decode([]byte(src), &cfg, Options{Dir: t.TempDir()})
	return cfg, err
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "unknown key with suggestion",
			in:   "relay:\n  realmm: x\n",
			want: []string{`relay: unknown key "realmm" (did you mean "realm"?) (line 2)`},
		},
		{
			name: "unknown top-level section",
			in:   "gatway:\n  enabled: true\n",
			want: []string{`unknown key "gatway" (line 1)`},
		},
		{
			name: "port out of range in a list",
			in:   "relay:\n  listen:\n    - 127.0.0.1:3478\n    - 0.0.0.0:70000\n",
			want: []string{"relay.listen[1]: port 70000 out of range (line 4)"},
		},
		{
			name: "host name instead of address",
			in:   "relay:\n  listen: [turn.example.org:3478]\n",
			want: []string{`relay.listen[0]: "turn.example.org" is not an IP address (host names are not accepted) (line 2)`},
		},
		{
			name: "wrong type bool",
			in:   "relay:\n  enabled: maybe\n",
			want: []string{`relay.enabled: want true or false, got string "maybe" (line 2)`},
		},
		{
			name: "integer overflow of a small field",
			in:   "relay:\n  quota: 70000\n",
			want: []string{"relay.quota: 70000 out of range (at most 65535) (line 2)"},
		},
		{
			name: "negative into unsigned",
			in:   "relay:\n  quota: -1\n",
			want: []string{"relay.quota: -1 must not be negative (line 2)"},
		},
		{
			name: "signed range",
			in:   "relay:\n  ratio: 300\n",
			want: []string{"relay.ratio: 300 out of range (-128 to 127) (line 2)"},
		},
		{
			name: "number where a string is wanted",
			in:   "relay:\n  realm: 12\n",
			want: []string{"relay.realm: want a string, got integer 12 (quote it) (line 2)"},
		},
		{
			name: "list where a mapping is wanted",
			in:   "relay: [1, 2]\n",
			want: []string{"relay: want a mapping of keys, got a list (line 1)"},
		},
		{
			name: "scalar where a list is wanted",
			in:   "relay:\n  listen: 127.0.0.1:3478\n",
			want: []string{`relay.listen: want a list, got string "127.0.0.1:3478" (line 2)`},
		},
		{
			name: "duration without unit",
			in:   "relay:\n  lifetime: 600\n",
			want: []string{`relay.lifetime: "600" is not a duration (use a unit: "500ms", "30s", "2h") (line 2)`},
		},
		{
			name: "reversed port range",
			in:   "relay:\n  ports: 5000-4000\n",
			want: []string{`relay.ports: port range "5000-4000" is reversed (line 2)`},
		},
		{
			name: "prefix with host bits",
			in:   "relay:\n  allowed_peers: [192.0.2.1/24]\n",
			want: []string{`relay.allowed_peers[0]: "192.0.2.1/24" has host bits set (did you mean 192.0.2.0/24?) (line 2)`},
		},
		{
			name: "mark too large",
			in:   "relay:\n  mark: 0x1ffffffff\n",
			want: []string{`relay.mark: "0x1ffffffff" is not a 32-bit mark (decimal or 0x hex) (line 2)`},
		},
		{
			name: "bad size and rate",
			in:   "relay:\n  buffer: 4 parsecs\n  rate: fast\n",
			want: []string{
				`relay.buffer: "4 parsecs" is not a size (use bytes or KiB, MiB, GiB) (line 2)`,
				`relay.rate: "fast" is not a bit rate (use bps, kbps, Mbps, Gbps) (line 3)`,
			},
		},
		{
			name: "inline field keeps its parent path",
			in:   "relay:\n  workers: many\n",
			want: []string{`relay.workers: want an integer, got string "many" (line 2)`},
		},
		{
			name: "validator problems carry relative paths and lines",
			in:   "relay:\n  enabled: true\n  quota: 2000\n",
			want: []string{
				"relay.listen: at least one address is required when enabled (line 1)",
				"relay.quota: 2000 is more than 1000 (line 3)",
			},
		},
		{
			name: "plain validator error at the section",
			in:   "log:\n  level: loud\n",
			want: []string{`log: level "loud" is not info or debug (line 1)`},
		},
		{
			name: "every problem at once, in line order",
			in:   "log:\n  level: loud\nrelay:\n  enabled: maybe\n  bogus: 1\n  listen: [1.2.3.4:99999]\n",
			want: []string{
				`log: level "loud" is not info or debug (line 1)`,
				`relay.enabled: want true or false, got string "maybe" (line 4)`,
				`relay: unknown key "bogus" (line 5)`,
				"relay.listen[0]: port 99999 out of range (line 6)",
			},
		},
		{
			name: "syntax error",
			in:   "relay:\n  realm: x\n\tbad: y\n",
			want: []string{"YAML syntax error near line 2: found a tab character that violates indentation"},
		},
		{
			name: "duplicate key",
			in:   "relay:\n  realm: a\n  realm: b\n",
			want: []string{`relay: key "realm" repeated (first at line 2) (line 3)`},
		},
		{
			name: "two documents",
			in:   "relay: {}\n---\nlog: {}\n",
			want: []string{"more than one YAML document in the file (line 2)"},
		},
		{
			name: "missing secret file",
			in:   "relay:\n  secret_file: /nonexistent/turn-secret\n",
			want: []string{"relay.secret_file: secret file /nonexistent/turn-secret cannot be opened: no such file or directory (line 2)"},
		},
		{
			name: "bad map value type",
			in:   "relay:\n  users:\n    alice: [1]\n",
			want: []string{"relay.users.alice: want a string, got a list (line 3)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(t, tc.in)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Decode error = %v (%T), want Problems", err, err)
			}
			got := strings.Split(ps.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	cfg, err := decode(t, `
relay:
  enabled: true
  listen: ["127.0.0.1:3478", "[::1]:5349"]
  ports: 40000-40099
  lifetime: 1h30m
  mark: 0x4d45
  allowed_peers: [203.0.113.7, 2001:db8::/32]
  users: {alice: x}
  buffer: 4MiB
  rate: 2Mbps
  workers: 3
log:
  level: debug
`)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Relay
	if !r.Enabled || len(r.Listen) != 2 || r.Listen[1].String() != "[::1]:5349" {
		t.Errorf("listen = %v", r.Listen)
	}
	if r.Realm != "example.org" {
		t.Errorf("realm default lost: %q", r.Realm)
	}
	if r.Ports.Len() != 100 || !r.Ports.Contains(40099) || r.Ports.Contains(40100) {
		t.Errorf("ports = %v", r.Ports)
	}
	if r.Lifetime.D() != 90*time.Minute {
		t.Errorf("lifetime = %v", r.Lifetime)
	}
	if r.Mark != 0x4d45 || r.Mark.String() != "0x4d45" {
		t.Errorf("mark = %v", r.Mark)
	}
	if r.Peers[0].String() != "203.0.113.7/32" || r.Peers[1].String() != "2001:db8::/32" {
		t.Errorf("peers = %v", r.Peers)
	}
	if r.Buffer != 4<<20 || r.Rate != 2_000_000 || r.Tuning.Workers != 3 {
		t.Errorf("buffer, rate, workers = %d, %d, %d", r.Buffer, r.Rate, r.Tuning.Workers)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("log level = %q", cfg.Log.Level)
	}
}

func TestDecodeEmptyKeepsDefaults(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "relay:\n"} {
		cfg, err := decode(t, in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if cfg.Relay.Realm != "example.org" || cfg.Log.Level != "info" {
			t.Errorf("%q: defaults lost: %+v", in, cfg)
		}
	}
}

func TestDecodeLoadsSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s"), []byte("  hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	if err := Decode([]byte("relay:\n  secret_file: s\n"), &cfg, Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if got := string(cfg.Relay.Secret.Bytes()); got != "hunter2" {
		t.Errorf("secret = %q", got)
	}
	if cfg.Relay.Secret.String() != "s" {
		t.Errorf("String() = %q, want the path only", cfg.Relay.Secret.String())
	}
	cfg = defaults()
	if err := Decode([]byte("relay:\n  secret_file: s\n"), &cfg, Options{Dir: dir, SkipSecrets: true}); err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.Secret.Bytes() != nil {
		t.Error("SkipSecrets read the secret")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("relay:\n  listen: [127.0.0.1:3478]\n  ports: 1-2\n"))
	f.Add([]byte("relay: &a {realm: x}\nlog: *a\n"))
	f.Add([]byte("relay:\n  users: {a: b}\n  allowed_peers: [::/0]\n"))
	f.Add([]byte("relay: &a {users: *a}\n"))
	f.Add([]byte("a: &a [*a, *a]\nrelay:\n  listen: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := defaults()
		err := Decode(data, &cfg, Options{SkipSecrets: true})
		if err == nil {
			return
		}
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("error %v is not Problems", err)
		}
		if len(ps) == 0 {
			t.Fatal("empty Problems returned as an error")
		}
	})
}
