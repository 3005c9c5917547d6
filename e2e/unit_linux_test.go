package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/config"
)

func TestParseNSName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantPID int
		role    string
		ok      bool
	}{
		{"ours", "mee2e-1234-edge", 1234, "edge", true},
		{"role with dash", "mee2e-77-edge-2", 77, "edge-2", true},
		{"other prefix", "medemo-1234-edge", 0, "", false},
		{"prefix of a longer prefix", "mee2eclean-1234-edge", 0, "", false},
		{"no role", "mee2e-1234", 0, "", false},
		{"empty role", "mee2e-1234-", 0, "", false},
		{"not a pid", "mee2e-abc-edge", 0, "", false},
		{"zero pid", "mee2e-0-edge", 0, "", false},
		{"someone else's", "policytest-1234-lan", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, role, ok := parseNSName("mee2e", tt.in)
			if pid != tt.wantPID || role != tt.role || ok != tt.ok {
				t.Errorf("parseNSName(%q) = %d, %q, %v; want %d, %q, %v", tt.in, pid, role, ok, tt.wantPID, tt.role, tt.ok)
			}
		})
	}
	if got := nsName("mee2e", 42, "inet"); got != "mee2e-42-inet" {
		t.Errorf("nsName = %q", got)
	}
}

func TestDiffLines(t *testing.T) {
	tests := []struct {
		name          string
		before, after []string
		want          []string
	}{
		{"equal", []string{"a", "b"}, []string{"a", "b"}, nil},
		{"added", []string{"a", "c"}, []string{"a", "b", "c"}, []string{"+ b"}},
		{"removed", []string{"a", "b", "c"}, []string{"a", "c"}, []string{"- b"}},
		{"changed", []string{"1000: fwmark 0x4d45 lookup 101"}, []string{"1000: fwmark 0x4d45 lookup 102"},
			[]string{"- 1000: fwmark 0x4d45 lookup 101", "+ 1000: fwmark 0x4d45 lookup 102"}},
		{"empty before", nil, []string{"x"}, []string{"+ x"}},
		{"empty after", []string{"x"}, nil, []string{"- x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := diffLines(tt.before, tt.after); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("diffLines = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP mediaedge_relay_packets_total Datagrams relayed.
# TYPE mediaedge_relay_packets_total counter
mediaedge_relay_packets_total{direction="to_client"} 161
mediaedge_relay_packets_total{direction="to_peer"} 162
mediaedge_gateway_packets_total{leg="cloud",direction="out"} 7
mediaedge_gateway_packets_total{leg="internal",direction="out"} 5 1700000000000
mediaedge_gateway_sessions 1
odd{msg="a \"quoted\" } value, ok"} 2.5e+00
`
	m, err := ParseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		metric string
		match  []string
		want   float64
		found  bool
	}{
		{"all series", "mediaedge_relay_packets_total", nil, 323, true},
		{"one label", "mediaedge_relay_packets_total", []string{"direction=to_peer"}, 162, true},
		{"two labels", "mediaedge_gateway_packets_total", []string{"leg=cloud", "direction=out"}, 7, true},
		{"with timestamp", "mediaedge_gateway_packets_total", []string{"leg=internal"}, 5, true},
		{"no labels", "mediaedge_gateway_sessions", nil, 1, true},
		{"escaped label", "odd", []string{`msg=a "quoted" } value, ok`}, 2.5, true},
		{"no match", "mediaedge_gateway_packets_total", []string{"leg=nowhere"}, 0, false},
		{"absent", "mediaedge_nothing", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := m.Sum(tt.metric, tt.match...)
			if got != tt.want || found != tt.found {
				t.Errorf("Sum(%s, %v) = %v, %v; want %v, %v", tt.metric, tt.match, got, found, tt.want, tt.found)
			}
		})
	}
	for _, bad := range []string{"name_only", `x{a="1"`, `x{a=1} 2`, "x notanumber", "x 1 2 3", `{a="b"} 1`} {
		if _, err := ParseMetrics(bad); err == nil {
			t.Errorf("ParseMetrics(%q): no error", bad)
		}
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("a 1\n")
	f.Add(`a{b="c",d="e\\n"} 2 3` + "\n# x\n")
	f.Add(`x{a="1"`)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMetrics(s)
		if err != nil {
			return
		}
		for _, smp := range m {
			if smp.Name == "" {
				t.Fatalf("sample without a name from %q", s)
			}
		}
	})
}

func TestLinearToULaw(t *testing.T) {
	// Values of Sun's reference g711.c linear2ulaw (16-bit input, bias
	// 0x84, clip 32635), which Python's audioop agrees with except for
	// the rounding of -1.
	tests := []struct {
		in   int16
		want byte
	}{
		{0, 0xff}, {-1, 0x7f}, {32767, 0x80}, {-32768, 0x00},
		{100, 0xf2}, {-100, 0x72}, {1000, 0xce}, {8000, 0xa0},
	}
	for _, tt := range tests {
		if got := linearToULaw(tt.in); got != tt.want {
			t.Errorf("linearToULaw(%d) = %#02x, want %#02x", tt.in, got, tt.want)
		}
	}
	a, b := audioFrame(440, 7), audioFrame(440, 7)
	if len(a) != samplesPerFrame || string(a) != string(b) {
		t.Fatal("audioFrame is not a deterministic 160-byte frame")
	}
	if string(audioFrame(440, 7)) == string(audioFrame(554, 7)) || string(audioFrame(440, 7)) == string(audioFrame(440, 8)) {
		t.Error("frames of different tones or indexes are equal")
	}
}

// TestEdgeConfigLoads feeds the configuration the scenario writes to the
// daemon's own loader: a key renamed by a component owner fails here
// without root.
func TestEdgeConfigLoads(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "turn-users"), []byte("e2e:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]netip.Prefix{nil, {NewMediaPrefix}} {
		ec := EdgeConfig{ControlSocket: filepath.Join(dir, "control.sock"), UsersFile: "turn-users", ExtraMediaPrefixes: extra}
		cfg, err := daemon.Parse([]byte(ec.Render()), dir, config.Options{})
		if err != nil {
			t.Fatalf("the scenario's configuration does not load:\n%v\n%s", err, ec.Render())
		}
		if !cfg.Relay.Enabled || !cfg.Gateway.Enabled || !cfg.Policy.Enabled || cfg.Policy.Mode != "enforce" {
			t.Errorf("components: relay %v gateway %v policy %v mode %q", cfg.Relay.Enabled, cfg.Gateway.Enabled, cfg.Policy.Enabled, cfg.Policy.Mode)
		}
		if cfg.Relay.Mark != Mark || cfg.Gateway.Cloud.Mark != Mark || cfg.Policy.Mark != Mark {
			t.Errorf("marks: relay %v gateway.cloud %v policy %v, want %#x everywhere", cfg.Relay.Mark, cfg.Gateway.Cloud.Mark, cfg.Policy.Mark, Mark)
		}
		if len(cfg.Policy.Media.Prefixes) != len(extra) {
			t.Errorf("policy.media.prefixes = %v, want %v", cfg.Policy.Media.Prefixes, extra)
		}
	}
}

func TestParseLinkJSON(t *testing.T) {
	in := `[{"ifindex":2,"ifname":"wan0","stats64":{"rx":{"bytes":100,"packets":2},"tx":{"bytes":300,"packets":3}}},
	{"ifindex":3,"ifname":"vpn0","stats64":{"rx":{"bytes":0,"packets":0},"tx":{"bytes":42,"packets":1}}}]`
	got, err := parseLinkJSON([]byte(in), "wan0", "vpn0")
	if err != nil {
		t.Fatal(err)
	}
	want := LinkCounters{TxPackets: 3, TxBytes: 300, RxPackets: 2, RxBytes: 100}
	if got["wan0"] != want {
		t.Errorf("wan0 = %+v, want %+v", got["wan0"], want)
	}
	if d := got["wan0"].Sub(got["vpn0"]); d.TxPackets != 2 || d.RxBytes != 100 {
		t.Errorf("Sub = %+v", d)
	}
	if _, err := parseLinkJSON([]byte(in), "lan0"); err == nil || !strings.Contains(err.Error(), "lan0") {
		t.Errorf("missing interface: err = %v", err)
	}
	if _, err := parseLinkJSON([]byte("not json"), "wan0"); err == nil {
		t.Error("garbage: no error")
	}
}

func TestFlowWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f := newFlow("test", 1, 0, 440, EdgeWANAddr)
	direct, vpn := netip.MustParseAddrPort("198.51.100.2:1"), netip.MustParseAddrPort("203.0.113.2:1")
	for i := uint32(0); i < 10; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		f.recordSent(i, at)
		switch {
		case i == 4: // lost
		case i < 6:
			f.recordArrival(i, at.Add(time.Millisecond), direct)
		default:
			f.recordArrival(i, at.Add(time.Millisecond), vpn)
		}
	}
	// Frames 0..7 (sent by 700 ms) are early enough for a window ending
	// at 1 s (300 ms in flight); arrivals 0..9 are inside it.
	w := f.Window(t0, t0.Add(time.Second))
	if w.Sent != 8 || w.Received != 7 || !reflect.DeepEqual(w.Lost, []uint32{4}) {
		t.Errorf("Window: sent %d received %d lost %v; want 8, 7, [4]", w.Sent, w.Received, w.Lost)
	}
	if w.Sources[direct.Addr()] != 5 || w.Sources[vpn.Addr()] != 4 {
		t.Errorf("Sources = %v", w.Sources)
	}
	if sent, got := f.Totals(); sent != 10 || got != 9 {
		t.Errorf("Totals = %d, %d; want 10, 9", sent, got)
	}
	if a := f.ArrivalsFrom(vpn.Addr(), t0.Add(650*time.Millisecond)); len(a) != 3 {
		t.Errorf("ArrivalsFrom = %d arrivals, want 3", len(a))
	}
}

func TestReverseMediaEntry(t *testing.T) {
	tests := []struct {
		line string
		want bool
	}{
		{"udp      17 119 src=52.112.0.10 dst=10.20.0.10 sport=3481 dport=5006 src=10.20.0.10 dst=52.112.0.10 sport=5006 dport=3481 [ASSURED] mark=0 use=1", true},
		{"udp      17 119 src=2603:1063::10 dst=fd20::10 sport=3481 dport=5008 src=fd20::10 dst=2603:1063::10 sport=5008 dport=3481 [ASSURED] mark=0 use=1", true},
		{"udp      17 119 src=10.20.0.10 dst=52.112.0.10 sport=5006 dport=3481 src=52.112.0.10 dst=198.51.100.2 sport=3481 dport=59861 [ASSURED] mark=0 use=1", false},
		{"udp      17 20 src=52.112.0.10 dst=198.51.100.2 sport=3481 dport=5006 [UNREPLIED] src=198.51.100.2 dst=52.112.0.10 sport=5006 dport=3481 mark=0 use=1", false},
		{"conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := reverseMediaEntry(tt.line); got != tt.want {
			t.Errorf("reverseMediaEntry(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}
