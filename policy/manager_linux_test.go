package policy

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/control"
	metest "github.com/mediaedge/mediaedge/internal/testutil"
)

// startFake starts a Manager on a fake kernel with its goroutines, as the
// daemon does, and returns it with its event feed and control server.
func startFake(t *testing.T, cfg Config, k *fakeKernel, sysctls map[string]string) (*Manager, *fakeEvents, *control.Server, *prometheus.Registry) {
	t.Helper()
	ev := newFakeEvents()
	h := defaultHooks(nsHandle{})
	h.open = func() (nlHandle, func(), error) { return k, func() {}, nil }
	h.subscribe = func() (eventSource, error) { return ev, nil }
	h.readSysctl = func(p string) (string, error) {
		if v, ok := sysctls[p]; ok {
			return v, nil
		}
		return "", unix.ENOENT
	}
	reg := prometheus.NewRegistry()
	ctl := control.NewServer(testLogger(t), nil)
	m, err := newManager(cfg, component.Deps{Logger: testLogger(t), Registry: reg, Control: ctl}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, ev, ctl, reg
}

// TestManagerRepairsOnEvents drives the watcher: a rule deleted by hand
// followed by its notification is put back; a link that went down and up
// (IPv4 routes gone without any route notification, only the link events)
// gets its routes back; both are counted as repairs only when they undo
// someone else's change.
func TestManagerRepairsOnEvents(t *testing.T) {
	k := newFakeKernel()
	idx := k.uplink()
	cfg := testConfig()
	m, ev, _, _ := startFake(t, cfg, k, nil)
	want := ownedLines(k.render())
	if len(want) == 0 {
		t.Fatal("nothing installed")
	}

	k.deleteRuleByHand(unix.AF_INET, 1010)
	ev.send(unix.RTM_DELRULE, ruleMsg(unix.AF_INET, 100, 77))
	if _, ok := metest.Poll(time.Second, func() bool { return slices.Equal(ownedLines(k.render()), want) }); !ok {
		t.Fatalf("rule not restored:\n%s", k.render())
	}
	if _, ok := metest.Poll(time.Second, func() bool { return testutil.ToFloat64(m.metrics.repairs) == 1 }); !ok {
		t.Errorf("repairs = %v, want 1", testutil.ToFloat64(m.metrics.repairs))
	}

	k.setLink("wan0", false, false)
	ev.send(unix.RTM_NEWLINK, linkMsg(idx, "wan0"))
	if _, ok := metest.Poll(time.Second, func() bool { return m.FullStatus().Uplink.State == uplinkDown }); !ok {
		t.Fatalf("status uplink %q, want down", m.FullStatus().Uplink.State)
	}
	if st := m.FullStatus(); st.State != "degraded" || !strings.Contains(st.Detail, "falls back to the VPN") {
		t.Errorf("status while down: %q %q", st.State, st.Detail)
	}
	k.setLink("wan0", true, true)
	ev.send(unix.RTM_NEWLINK, linkMsg(idx, "wan0"))
	if _, ok := metest.Poll(time.Second, func() bool { return slices.Equal(ownedLines(k.render()), want) }); !ok {
		t.Fatalf("routes not restored after link up:\n%s", lineDiff(strings.Join(want, "\n"), strings.Join(ownedLines(k.render()), "\n")))
	}
	// The pass publishes its status after its last kernel change.
	metest.Poll(time.Second, func() bool { return m.FullStatus().State == "running" })
	st := m.FullStatus()
	if st.State != "running" || st.Repairs != 1 || st.Uplink.IPv4.GatewaySource != "remembered" {
		t.Errorf("status after the flap: state %q repairs %d gateway source %q (the main route it was learned from is gone)",
			st.State, st.Repairs, st.Uplink.IPv4.GatewaySource)
	}
	// An irrelevant notification causes no pass.
	k.takeCalls()
	ev.send(unix.RTM_NEWLINK, linkMsg(99, "lan7"))
	time.Sleep(100 * time.Millisecond)
	if c := k.takeCalls(); len(c) > 0 {
		t.Errorf("irrelevant event changed the kernel: %v", c)
	}
}

// TestManagerReflushesConntrack checks the second conntrack flush after the
// uplink comes back: a reply still in flight through the VPN creates a new
// entry (original direction from the media server) just after the first
// flush; left alone it pins the client's flow to the VPN's NAT-less path.
func TestManagerReflushesConntrack(t *testing.T) {
	k := newFakeKernel()
	idx := k.uplink()
	cfg := testConfig()
	cfg.ConntrackFlush = true
	_, ev, _, _ := startFake(t, cfg, k, nil)
	want := ownedLines(k.render())
	k.setLink("wan0", false, false)
	ev.send(unix.RTM_NEWLINK, linkMsg(idx, "wan0"))
	time.Sleep(100 * time.Millisecond)
	k.setLink("wan0", true, true)
	ev.send(unix.RTM_NEWLINK, linkMsg(idx, "wan0"))
	if _, ok := metest.Poll(time.Second, func() bool { return slices.Equal(ownedLines(k.render()), want) }); !ok {
		t.Fatalf("routes not restored after link up")
	}
	late := &netlink.ConntrackFlow{}
	late.Forward.SrcIP = mustPrefix("52.112.0.10/32").Addr().AsSlice()
	late.Forward.DstIP = mustPrefix("10.20.0.10/32").Addr().AsSlice()
	late.Forward.Protocol, late.Forward.SrcPort, late.Forward.DstPort = unix.IPPROTO_UDP, 3481, 5006
	other := &netlink.ConntrackFlow{}
	other.Forward.SrcIP = mustPrefix("10.20.0.10/32").Addr().AsSlice()
	other.Forward.DstIP = mustPrefix("192.0.2.80/32").Addr().AsSlice()
	other.Forward.Protocol, other.Forward.SrcPort, other.Forward.DstPort = unix.IPPROTO_UDP, 5006, 3481
	k.mu.Lock()
	k.flows = append(k.flows, late, other)
	k.mu.Unlock()
	gone := func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return !slices.Contains(k.flows, late)
	}
	if _, ok := metest.Poll(2*time.Second, gone); !ok {
		t.Fatal("the entry created after the first flush was not deleted by the second")
	}
	k.mu.Lock()
	kept := slices.Contains(k.flows, other)
	k.mu.Unlock()
	if !kept {
		t.Error("the second flush deleted a flow that is not media")
	}
	// The client's own, current entry survives the second flush.
	fresh := &netlink.ConntrackFlow{}
	fresh.Forward.SrcIP = mustPrefix("10.20.0.10/32").Addr().AsSlice()
	fresh.Forward.DstIP = mustPrefix("52.112.0.10/32").Addr().AsSlice()
	fresh.Forward.Protocol, fresh.Forward.SrcPort, fresh.Forward.DstPort = unix.IPPROTO_UDP, 5006, 3481
	f := &flowFilter{prefixes: []netip.Prefix{mustPrefix("52.112.0.0/14")}, reverseOnly: true}
	if f.MatchConntrackFlow(fresh) || !f.MatchConntrackFlow(late) {
		t.Error("the second flush's filter must match only entries made from the media side")
	}
}

// TestManagerPlanMode checks that plan mode reports the plan and never
// changes the kernel.
func TestManagerPlanMode(t *testing.T) {
	k := newFakeKernel()
	k.uplink()
	before := k.render()
	cfg := testConfig()
	cfg.Mode = ModePlan
	m, _, ctl, _ := startFake(t, cfg, k, nil)
	if k.render() != before || len(k.takeCalls()) > 0 {
		t.Fatal("plan mode changed the kernel")
	}
	st := m.FullStatus()
	if st.Mode != ModePlan || len(st.Pending) != 18 || !slices.Contains(st.Pending, "ip -4 rule add pref 1010 lookup 100 protocol 77") {
		t.Errorf("plan status: mode %q, %d pending: %v", st.Mode, len(st.Pending), st.Pending)
	}
	rec := httptest.NewRecorder()
	ctl.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/policy/reconcile", nil))
	if rec.Code != http.StatusOK || k.render() != before {
		t.Errorf("reconcile in plan mode: %d, kernel changed: %v", rec.Code, k.render() != before)
	}
}

// TestManagerPlanWithoutUplink is the embedded default: plan mode, no
// interface configured, no kernel access needed.
func TestManagerPlanWithoutUplink(t *testing.T) {
	cfg := DefaultConfig()
	h := defaultHooks(nsHandle{})
	h.open = func() (nlHandle, func(), error) { return nil, nil, ErrUnsupported }
	m, err := newManager(cfg, component.Deps{}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := m.FullStatus()
	want := "ip -4 route replace 52.112.0.0/14 via <gateway> dev <uplink> table 100 proto 77 metric 1024"
	if !slices.Contains(st.Pending, want) {
		t.Errorf("plan without an uplink lacks %q:\n%s", want, strings.Join(st.Pending, "\n"))
	}
}

func TestManagerControlAPI(t *testing.T) {
	k := newFakeKernel()
	k.uplink()
	foreign := netlink.NewRule()
	foreign.Family, foreign.Priority, foreign.Table = unix.AF_INET, 999, 220
	k.insertRule(*foreign)
	sysctls := map[string]string{
		"ipv4/conf/all/rp_filter": "0", "ipv4/conf/wan0/rp_filter": "1",
		"ipv4/conf/all/ignore_routes_with_linkdown": "0", "ipv4/conf/wan0/ignore_routes_with_linkdown": "0",
		"ipv4/conf/all/forwarding": "1", "ipv6/conf/all/forwarding": "1",
		"ipv6/conf/wan0/ignore_routes_with_linkdown": "1",
		"ipv6/conf/all/keep_addr_on_down":            "0", "ipv6/conf/wan0/keep_addr_on_down": "0",
	}
	m, _, ctl, reg := startFake(t, testConfig(), k, sysctls)

	rec := httptest.NewRecorder()
	ctl.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/policy/status", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); rec.Code != http.StatusOK || err != nil {
		t.Fatalf("GET status: %d %v\n%s", rec.Code, err, rec.Body)
	}
	if st.State != "running" || st.Uplink.State != uplinkUp || st.Uplink.IPv4.Gateway != "198.51.100.1" ||
		len(st.Desired) != 18 || len(st.Actual) != 18 || len(st.Pending) != 0 {
		t.Errorf("status: %+v", st)
	}
	for _, w := range []string{"priority 999 < 1000", "rp_filter=1", "keep_addr_on_down=0", "net.ipv4.conf.wan0.ignore_routes_with_linkdown=0"} {
		if !slices.ContainsFunc(st.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("warnings lack %q: %v", w, st.Warnings)
		}
	}
	// Status shows drift at once, before a pass repairs it.
	k.deleteRuleByHand(unix.AF_INET6, 1001)
	rec = httptest.NewRecorder()
	ctl.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/policy/status", nil))
	_ = json.Unmarshal(rec.Body.Bytes(), &st)
	if len(st.Pending) != 1 || !strings.HasPrefix(st.Pending[0], "ip -6 rule add pref 1001") {
		t.Errorf("pending after a hand deletion: %v", st.Pending)
	}
	rec = httptest.NewRecorder()
	ctl.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/policy/reconcile", nil))
	var res ReconcileResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || len(res.Applied) != 1 || res.Status.Repairs != 1 {
		t.Errorf("POST reconcile: %v %+v", err, res)
	}
	n, err := testutil.GatherAndCount(reg, "mediaedge_policy_rules_owned", "mediaedge_policy_uplink_up", "mediaedge_policy_drift_repairs_total")
	if err != nil || n != 4 {
		t.Errorf("metrics: %d series, %v", n, err)
	}
	if got := testutil.ToFloat64(m.metrics.rulesOwned); got != 8 {
		t.Errorf("rules owned = %v, want 8", got)
	}
}

func TestManagerOnStopKeep(t *testing.T) {
	k := newFakeKernel()
	k.uplink()
	cfg := testConfig()
	cfg.OnStop = OnStopKeep
	m, _, _, _ := startFake(t, cfg, k, nil)
	installed := k.render()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if k.render() != installed {
		t.Error("on_stop: keep removed rules")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.Reload(t.Context(), cfg); !errors.Is(err, ErrClosed) {
		t.Errorf("Reload after Close: %v, want ErrClosed", err)
	}
}

func TestForeignRuleWarnings(t *testing.T) {
	cfg := testConfig()
	rule := func(prio, table int, mut func(*netlink.Rule)) netlink.Rule {
		r := netlink.NewRule()
		r.Family, r.Priority, r.Table = unix.AF_INET, prio, table
		if mut != nil {
			mut(r)
		}
		return *r
	}
	tests := []struct {
		name string
		r    netlink.Rule
		want string // "" = no warning
	}{
		{"kernel local rule", rule(0, tableLocal, nil), ""},
		{"catch-all before ours", rule(220, 220, nil), "takes traffic before"},
		{"wg-quick style not-fwmark", rule(999, 51820, func(r *netlink.Rule) { r.Mark, r.Invert = 0xca6c, true }), "takes traffic before"},
		{"suppressing main lookup", rule(998, tableMain, func(r *netlink.Rule) { r.SuppressPrefixlen = 0 }), ""},
		{"narrow source rule", rule(500, 200, func(r *netlink.Rule) { r.Src = ipnetOf(mustPrefix("192.0.2.0/24")) }), ""},
		{"other mark", rule(500, 200, func(r *netlink.Rule) { r.Mark = 0x1 }), ""},
		{"our mark", rule(500, 200, func(r *netlink.Rule) { r.Mark = 0x4d45 }), "takes traffic before"},
		{"inside our range", rule(1050, 200, nil), "inside mediaedge's priority range 1000-1099"},
		{"after ours", rule(5000, 200, nil), ""},
		{"ours", rule(1010, 100, func(r *netlink.Rule) { r.Protocol = 77 }), ""},
	}
	for _, tt := range tests {
		w := foreignRuleWarnings(&cfg, []netlink.Rule{tt.r}, []uint8{77})
		switch {
		case tt.want == "" && len(w) > 0:
			t.Errorf("%s: unexpected warning %v", tt.name, w)
		case tt.want != "" && (len(w) != 1 || !strings.Contains(w[0], tt.want)):
			t.Errorf("%s: warnings %v, want one mentioning %q", tt.name, w, tt.want)
		}
	}
}

func TestFlowFilter(t *testing.T) {
	cfg := testConfig()
	cfg.Match = MatchUDP
	cfg.Media.Presets = []string{"teams", "meet"}
	media, err := assembleMedia(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := []op{
		{kind: opRouteReplace, media: true, route: netlink.Route{Family: unix.AF_INET, Table: 100, Dst: ipnetOf(mustPrefix("52.112.0.0/14"))}},
		{kind: opRouteReplace, media: true, route: netlink.Route{Family: unix.AF_INET, Table: 101, Dst: ipnetOf(mustPrefix("0.0.0.0/0"))}},
		{kind: opRouteReplace, media: false, route: netlink.Route{Family: unix.AF_INET, Table: 101, Dst: ipnetOf(mustPrefix("10.0.0.0/8"))}},
	}
	fs := flowFilters(&cfg, &media, done)
	f := fs[unix.AF_INET]
	if f == nil || fs[unix.AF_INET6] != nil {
		t.Fatalf("filters %v", fs)
	}
	flow := func(dst string, proto uint8, port uint16) *netlink.ConntrackFlow {
		fl := &netlink.ConntrackFlow{}
		fl.Forward.DstIP = mustPrefix(dst + "/32").Addr().AsSlice()
		fl.Forward.Protocol, fl.Forward.DstPort = proto, port
		return fl
	}
	// rflow is an entry the media server's packet created: original
	// direction from the media address to the client.
	rflow := func(src string, proto uint8, sport uint16) *netlink.ConntrackFlow {
		fl := &netlink.ConntrackFlow{}
		fl.Forward.SrcIP = mustPrefix(src + "/32").Addr().AsSlice()
		fl.Forward.DstIP = mustPrefix("10.20.0.10/32").Addr().AsSlice()
		fl.Forward.Protocol, fl.Forward.SrcPort, fl.Forward.DstPort = proto, sport, 5006
		return fl
	}
	for _, c := range []struct {
		f    *netlink.ConntrackFlow
		want bool
	}{
		{rflow("52.113.1.1", unix.IPPROTO_UDP, 3481), true},
		{rflow("52.113.1.1", unix.IPPROTO_UDP, 443), false},
		{rflow("198.51.100.9", unix.IPPROTO_UDP, 19305), true},
		{rflow("10.1.1.1", unix.IPPROTO_UDP, 19305), false},
		{flow("52.113.1.1", unix.IPPROTO_UDP, 3479), true},
		{flow("52.113.1.1", unix.IPPROTO_UDP, 443), false}, // match udp: not a media port
		{flow("52.113.1.1", unix.IPPROTO_TCP, 3479), false},
		{flow("52.122.0.1", unix.IPPROTO_UDP, 3479), false},   // its route did not change
		{flow("198.51.100.9", unix.IPPROTO_UDP, 19305), true}, // port-only media, direct default changed
		{flow("10.1.1.1", unix.IPPROTO_UDP, 19305), false},    // ...but never corporate
	} {
		if got := f.MatchConntrackFlow(c.f); got != c.want {
			t.Errorf("flow %s:%d -> %s:%d proto %d: match %v, want %v", c.f.Forward.SrcIP, c.f.Forward.SrcPort, c.f.Forward.DstIP, c.f.Forward.DstPort, c.f.Forward.Protocol, got, c.want)
		}
	}
}

// TestNewAndReloadValidate checks that the constructor and Reload refuse
// what Validate refuses instead of trusting their caller.
func TestNewAndReloadValidate(t *testing.T) {
	bad := DefaultConfig()
	bad.Match = "tcp"
	if _, err := New(bad, component.Deps{Registry: prometheus.NewRegistry()}); err == nil || !strings.Contains(err.Error(), "match") {
		t.Fatalf("New(match tcp) = %v, want a match problem", err)
	}
	m, err := New(DefaultConfig(), component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Reload(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "match") {
		t.Fatalf("Reload(match tcp) = %v, want a match problem", err)
	}
}
