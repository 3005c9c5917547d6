package relay

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestCoturnRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"10.0.0.0-10.255.255.255", []string{"10.0.0.0/8"}},
		{"172.16.0.0-172.31.255.255", []string{"172.16.0.0/12"}},
		{"192.0.2.1", []string{"192.0.2.1/32"}},
		{"192.0.2.0/24", []string{"192.0.2.0/24"}},
		{"192.0.2.7/24", []string{"192.0.2.0/24"}},
		{"192.0.2.1-192.0.2.6", []string{"192.0.2.1/32", "192.0.2.2/31", "192.0.2.4/31", "192.0.2.6/32"}},
		{"0.0.0.0-255.255.255.255", []string{"0.0.0.0/0"}},
		{"fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"fc00::/7"}},
		{"2001:db8::1", []string{"2001:db8::1/128"}},
	} {
		got, err := coturnRange(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("coturnRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.9-10.0.0.1", "10.0.0.1-2001:db8::1", "nonsense", "10.0.0.1-x",
		"fe80::1%eth0", "::-ffff::%0", "fe80::1%eth0-fe80::2"} {
		if got, err := coturnRange(bad); err == nil {
			t.Errorf("coturnRange(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseCoturnSyntax(t *testing.T) {
	got, err := parseCoturn([]byte("# comment\n\nlistening-port=3479\n--realm example.org\nfingerprint\n  pidfile = \"/run/x.pid\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []coturnLine{{3, "listening-port", "3479"}, {4, "realm", "example.org"}, {5, "fingerprint", ""}, {6, "pidfile", "/run/x.pid"}}
	if !slices.Equal(got, want) {
		t.Errorf("parseCoturn = %+v, want %+v", got, want)
	}
}

func TestImportCoturnListenerSwitches(t *testing.T) {
	opts := CoturnOptions{UsersFile: "u", SecretFile: "s", NewSecret: func() (string, error) { return "generated", nil }}
	imp, err := ImportCoturn([]byte("listening-ip=192.0.2.10\nno-tcp\nuser=a:b\n"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(imp.Section, "transport: tcp") || !strings.Contains(imp.Section, `{transport: udp, addr: "192.0.2.10:3478"}`) {
		t.Errorf("no-tcp not applied:\n%s", imp.Section)
	}
	if imp.GeneratedSecret || imp.Secrets != nil || string(imp.Users) != "a:b\n" {
		t.Errorf("credentials: generated %v secrets %q users %q", imp.GeneratedSecret, imp.Secrets, imp.Users)
	}
	if _, err := ImportCoturn([]byte("no-udp\nno-tcp\n"), opts); err == nil {
		t.Error("a file with every listener off was accepted")
	}
}

func FuzzImportCoturn(f *testing.F) {
	f.Add([]byte("listening-port=3478\nexternal-ip=203.0.113.7/10.0.0.1\ndenied-peer-ip=10.0.0.0-10.255.255.255\nuser=a:b\n"))
	f.Add([]byte("--realm \"x\"\nmin-port=70000\nmax-port=1\nallowed-peer-ip=::1-::ffff\n"))
	opts := CoturnOptions{UsersFile: "u", SecretFile: "s", NewSecret: func() (string, error) { return "generated", nil }}
	f.Fuzz(func(t *testing.T, data []byte) {
		imp, err := ImportCoturn(data, opts)
		if err != nil {
			return
		}
		if imp.Section == "" {
			t.Fatal("empty section without an error")
		}
		// Whatever the input, the section is well-formed YAML.
		var v map[string]any
		if err := yaml.Unmarshal([]byte("relay:\n"+imp.Section), &v); err != nil {
			t.Fatalf("the section is not YAML: %v\n%s", err, imp.Section)
		}
	})
}
