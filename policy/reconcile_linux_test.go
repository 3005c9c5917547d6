package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
)

// fakeManager returns a Manager on k, started by hand (no goroutines):
// tests drive passes with pass.
func fakeManager(t testing.TB, cfg Config, k *fakeKernel) *Manager {
	t.Helper()
	h := defaultHooks(nsHandle{})
	h.open = func() (nlHandle, func(), error) { return k, func() {}, nil }
	h.subscribe = func() (eventSource, error) { return newFakeEvents(), nil }
	h.readSysctl = nil
	m, err := newManager(cfg, component.Deps{}, h)
	if err != nil {
		t.Fatal(err)
	}
	if m.media, err = loadMedia(&m.cfg); err != nil {
		t.Fatal(err)
	}
	m.rec, m.started = &reconciler{h: k}, true
	return m
}

func (m *Manager) pass(all bool) passOutcome {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	return m.passLocked(triggerEvent, all)
}

// ownedLines returns the lines of a rendering in protocol 77.
func ownedLines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.HasSuffix(l, " proto 77") || strings.Contains(l, " proto 77 ") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func foreignLines(s string) []string {
	owned := ownedLines(s)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if !slices.Contains(owned, l) {
			out = append(out, l)
		}
	}
	return out
}

func (m *Manager) desiredNow(t *testing.T, k *fakeKernel) []string {
	t.Helper()
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	up, err := m.rec.resolveUplink(&m.cfg, &m.mem)
	if err != nil {
		t.Fatal(err)
	}
	d := desire(&m.cfg, &m.media, &up)
	out := strings.Split(strings.TrimSpace(d.render(k.namesLocked())), "\n")
	slices.Sort(out)
	return out
}

// TestReplays applies random sequences of state changes (link flaps,
// carrier loss, rules and routes deleted by hand, foreign and duplicate
// rules, address changes, reloads) and checks after every pass that the
// kernel holds exactly the desired rule set once, that foreign objects are
// untouched, and that a second pass changes nothing.
func TestReplays(t *testing.T) {
	foreign := netlink.NewRule()
	foreign.Family, foreign.Priority, foreign.Table, foreign.Protocol = unix.AF_INET, 500, 220, unix.RTPROT_BOOT

	type step struct {
		name string
		do   func(k *fakeKernel, m *Manager, r *rand.Rand)
	}
	reload := func(mut func(*Config)) func(*fakeKernel, *Manager, *rand.Rand) {
		return func(_ *fakeKernel, m *Manager, _ *rand.Rand) {
			cfg := testConfig()
			mut(&cfg)
			if err := m.Reload(t.Context(), cfg); err != nil {
				t.Fatalf("reload: %v", err)
			}
		}
	}
	steps := []step{
		{"link down", func(k *fakeKernel, _ *Manager, _ *rand.Rand) { k.setLink("wan0", false, false) }},
		{"link up", func(k *fakeKernel, _ *Manager, _ *rand.Rand) { k.setLink("wan0", true, true) }},
		{"carrier lost", func(k *fakeKernel, _ *Manager, _ *rand.Rand) { k.setLink("wan0", true, false) }},
		{"rule deleted by hand", func(k *fakeKernel, _ *Manager, r *rand.Rand) {
			fam := []int{unix.AF_INET, unix.AF_INET6}[r.IntN(2)]
			k.deleteRuleByHand(fam, []int{1000, 1001, 1002, 1010, 2000, 2010}[r.IntN(6)])
		}},
		{"route deleted by hand", func(k *fakeKernel, _ *Manager, r *rand.Rand) {
			k.deleteRouteByHand([]int{100, 101, 110, 111}[r.IntN(4)], r.IntN(10))
		}},
		{"foreign rule added", func(k *fakeKernel, _ *Manager, _ *rand.Rand) {
			if !strings.Contains(k.render(), "500:") {
				k.insertRule(*foreign)
			}
		}},
		{"owned rule duplicated", func(k *fakeKernel, _ *Manager, _ *rand.Rand) {
			k.mu.Lock()
			var dup *netlink.Rule
			for i := range k.rules {
				if k.rules[i].Protocol == 77 {
					c := k.rules[i]
					dup = &c
				}
			}
			k.mu.Unlock()
			if dup != nil {
				k.insertRule(*dup)
			}
		}},
		{"uplink address changed", func(k *fakeKernel, _ *Manager, r *rand.Rand) {
			l, _ := k.LinkByName("wan0")
			k.delAddrs(l.Attrs().Index)
			k.addAddr(l.Attrs().Index, fmt.Sprintf("198.51.100.%d/24", 2+r.IntN(3)))
			k.addAddr(l.Attrs().Index, "2001:db8:100::2/64")
		}},
		{"reload: defaults", reload(func(*Config) {})},
		{"reload: udp match with zoom", reload(func(c *Config) { c.Match = MatchUDP; c.Media.Presets = []string{"teams", "zoom"} })},
		{"reload: fail closed", reload(func(c *Config) { c.OnUplinkDown = UplinkDownFailClosed })},
		{"reload: other layout", reload(func(c *Config) { c.Priority, c.Tables = 2000, TablesConfig{Media: 110, Direct: 111} })},
		{"reload: no mark, extra prefix", reload(func(c *Config) {
			c.Mark = 0
			c.Media.Prefixes = []config.Prefix{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}
		})},
	}
	for seed := range uint64(40) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			k := newFakeKernel()
			k.uplink()
			m := fakeManager(t, testConfig(), k)
			if out := m.pass(true); out.err != nil {
				t.Fatalf("first pass: %v", out.err)
			}
			wantForeign := foreignLines(k.render())
			var history []string
			for range 25 {
				s := steps[r.IntN(len(steps))]
				history = append(history, s.name)
				s.do(k, m, r)
				if s.name == "foreign rule added" {
					wantForeign = foreignLines(k.render())
				}
				if out := m.pass(false); out.err != nil && !errors.Is(out.err, unix.ENETUNREACH) && !errors.Is(out.err, unix.EHOSTUNREACH) {
					t.Fatalf("after %v: pass: %v", history, out.err)
				}
				got := k.render()
				if want := m.desiredNow(t, k); !slices.Equal(ownedLines(got), want) {
					t.Fatalf("after %v:\nowned:\n%s\nwant:\n%s\ndiff:\n%s", history, strings.Join(ownedLines(got), "\n"),
						strings.Join(want, "\n"), lineDiff(strings.Join(want, "\n"), strings.Join(ownedLines(got), "\n")))
				}
				if f := foreignLines(got); !slices.Equal(f, wantForeign) {
					t.Fatalf("after %v: foreign objects changed:\n%s\nwant:\n%s", history, strings.Join(f, "\n"), strings.Join(wantForeign, "\n"))
				}
				k.takeCalls()
				m.pass(false)
				if calls := k.takeCalls(); len(calls) > 0 {
					t.Fatalf("after %v: second pass not idempotent: %v", history, calls)
				}
			}
		})
	}
}

// TestAddBeforeDelete reloads to a new media set and a new layout and
// checks that every add comes before every delete, and that what both
// states share is not touched.
func TestAddBeforeDelete(t *testing.T) {
	k := newFakeKernel()
	k.uplink()
	m := fakeManager(t, testConfig(), k)
	m.pass(true)
	k.takeCalls()

	cfg := testConfig()
	cfg.Media.Presets = []string{"zoom"}
	cfg.Media.Prefixes = []config.Prefix{{Prefix: netip.MustParsePrefix("52.112.0.0/14")}}
	cfg.Priority = 3000
	if err := m.Reload(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	calls := k.takeCalls()
	lastAdd, firstDel := -1, len(calls)
	for i, c := range calls {
		if strings.HasPrefix(c, "add") || strings.HasPrefix(c, "replace") {
			lastAdd = i
		} else if i < firstDel {
			firstDel = i
		}
		if strings.Contains(c, "52.112.0.0/14") {
			t.Errorf("a prefix in both media sets was touched: %s", c)
		}
	}
	if lastAdd > firstDel {
		t.Errorf("a delete came before an add:\n%s", strings.Join(calls, "\n"))
	}
	if !slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "del route -4 52.122.0.0/15") }) ||
		!slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "del rule -4 1010:") }) {
		t.Errorf("old objects not deleted:\n%s", strings.Join(calls, "\n"))
	}
}

func TestApplyKernelAnswers(t *testing.T) {
	tests := []struct {
		name    string
		fail    map[string]error
		after   map[string]error // the op takes effect, then answers this
		wantErr error
		// wantDeletes says whether deletes ran after the failure.
		wantDeletes bool
	}{
		{"EEXIST on rule add is success", nil, map[string]error{"add rule": unix.EEXIST}, nil, true},
		{"ENOENT on rule delete is success", nil, map[string]error{"del rule": unix.ENOENT}, nil, true},
		{"ESRCH on route delete is success", nil, map[string]error{"del route": unix.ESRCH}, nil, true},
		{"a failed route add holds deletes back", map[string]error{"replace route": unix.ENETUNREACH}, nil, unix.ENETUNREACH, false},
		{"a failed delete is an error", map[string]error{"del rule": unix.EPERM}, nil, unix.EPERM, true},
		{"an add the kernel acknowledges but drops is caught on read-back", map[string]error{"add rule": errSilentDrop}, nil, ErrReadback, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel()
			k.uplink()
			m := fakeManager(t, testConfig(), k)
			m.pass(true)
			// Reload to another priority: adds and deletes of rules.
			cfg := testConfig()
			cfg.Priority = 3000
			cfg.Media.Prefixes = []config.Prefix{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}
			k.mu.Lock()
			for op, err := range tt.fail {
				k.failOp[op] = err
			}
			for op, err := range tt.after {
				k.failAfter[op] = err
			}
			k.mu.Unlock()
			m.applyMu.Lock()
			m.cfg = cfg
			m.addLayoutLocked(&cfg)
			m.media, _ = loadMedia(&cfg)
			out := m.passLocked(triggerReload, false)
			m.applyMu.Unlock()
			if !errors.Is(out.err, tt.wantErr) || (tt.wantErr == nil) != (out.err == nil) {
				t.Fatalf("err = %v, want %v", out.err, tt.wantErr)
			}
			var oe *OpError
			if tt.wantErr != nil && !errors.Is(tt.wantErr, ErrReadback) && !errors.As(out.err, &oe) {
				t.Errorf("error %v is not an *OpError naming the command", out.err)
			}
			deleted := slices.ContainsFunc(k.takeCalls(), func(c string) bool { return strings.HasPrefix(c, "del") })
			if deleted != tt.wantDeletes {
				t.Errorf("deletes ran = %v, want %v", deleted, tt.wantDeletes)
			}
			// Whatever happened, the next pass converges.
			if out := m.pass(false); out.err != nil {
				t.Fatalf("next pass: %v", out.err)
			}
			if got, want := ownedLines(k.render()), m.desiredNow(t, k); !slices.Equal(got, want) {
				t.Errorf("not converged:\n%s", lineDiff(strings.Join(want, "\n"), strings.Join(got, "\n")))
			}
		})
	}
}

func TestDumpInterruptedIsRetried(t *testing.T) {
	k := newFakeKernel()
	k.uplink()
	k.dumpInt = dumpAttempts - 1
	r := &reconciler{h: k}
	if _, err := r.observe([]uint8{77}, nil); err != nil {
		t.Fatalf("observe with %d interrupted dumps: %v", dumpAttempts-1, err)
	}
	k.dumpInt = 1000
	if _, err := r.observe([]uint8{77}, nil); !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatalf("observe with endless interrupted dumps: err = %v", err)
	}
}

// TestStartRemovesStale puts objects of an earlier run in the kernel (a
// duplicate, an old priority, an old table) and checks that the start-up
// pass leaves exactly the desired set, and that flush then removes all of
// it and nothing else.
func TestStartRemovesStale(t *testing.T) {
	k := newFakeKernel()
	k.uplink()
	pristine := k.render()
	stale := netlink.NewRule()
	stale.Family, stale.Priority, stale.Table, stale.Protocol = unix.AF_INET, 1500, 200, 77
	k.insertRule(*stale)
	k.insertRule(*stale) // a duplicate
	k.mu.Lock()
	k.routes = append(k.routes, netlink.Route{Family: unix.AF_INET, Dst: ipnetOf(netip.MustParsePrefix("203.0.113.0/24")),
		Table: 200, Protocol: 77, Type: unix.RTN_THROW, Priority: 1024})
	k.mu.Unlock()

	m := fakeManager(t, testConfig(), k)
	if out := m.pass(true); out.err != nil {
		t.Fatal(out.err)
	}
	got := k.render()
	if strings.Contains(got, "1500:") || strings.Contains(got, "table 200") {
		t.Errorf("stale objects left:\n%s", got)
	}
	if want := m.desiredNow(t, k); !slices.Equal(ownedLines(got), want) {
		t.Errorf("owned:\n%s", lineDiff(strings.Join(want, "\n"), strings.Join(ownedLines(got), "\n")))
	}
	cmds, err := (&reconciler{h: k}).flush([]uint8{77})
	if err != nil || len(cmds) == 0 {
		t.Fatalf("flush: %d commands, %v", len(cmds), err)
	}
	if got := k.render(); got != pristine {
		t.Errorf("after flush:\n%s\nwant the kernel's own rules only:\n%s", got, pristine)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
