package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel implements nlHandle with the kernel behaviours the reconciler
// depends on, observed on 6.18: rules are ordered by priority with ties in
// insertion order, RuleAdd is NLM_F_EXCL (EEXIST for an identical rule),
// a missing rule answers ENOENT and a missing IPv4 route ESRCH, a route
// slot is (table, dst, tos, metric), a unicast route needs its link up,
// IPv6 reject routes read back on lo, and a link going down deletes the
// routes through it without telling anyone. It renders its tables as ip
// text. Safe for concurrent use.
type fakeKernel struct {
	mu     sync.Mutex
	links  []*netlink.Device
	addrs  map[int][]netlink.Addr
	rules  []netlink.Rule
	routes []netlink.Route
	flows  []*netlink.ConntrackFlow
	calls  []string // "add rule ...", "del route ..." in order
	// failOp makes the next call whose "verb kind" prefix matches fail
	// without effect; failAfter makes it take effect, then answer the error
	// (a race: someone else did the same thing first).
	failOp    map[string]error
	failAfter map[string]error
	dumpInt   int // the next dumpInt dumps answer ErrDumpInterrupted
}

func newFakeKernel() *fakeKernel {
	k := &fakeKernel{addrs: map[int][]netlink.Addr{}, failOp: map[string]error{}, failAfter: map[string]error{}}
	k.addLink("lo", net.FlagUp|net.FlagRunning|net.FlagLoopback)
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		k.rules = append(k.rules, kernelRule(fam, 0, tableLocal))
		k.rules = append(k.rules, kernelRule(fam, 32766, tableMain))
	}
	k.rules = append(k.rules, kernelRule(unix.AF_INET, 32767, tableDefault))
	return k
}

func kernelRule(fam, prio, table int) netlink.Rule {
	r := netlink.NewRule()
	r.Family, r.Priority, r.Table, r.Protocol = fam, prio, table, unix.RTPROT_KERNEL
	return *r
}

func (k *fakeKernel) addLink(name string, flags net.Flags) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	idx := len(k.links) + 1
	k.links = append(k.links, &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: idx, Name: name, Flags: flags}})
	return idx
}

func (k *fakeKernel) linkLocked(name string) *netlink.Device {
	for _, l := range k.links {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// uplink builds the usual edge: wan0 with 198.51.100.2/24 and
// 2001:db8:100::2/64, and the VPN's host routes through it in main.
func (k *fakeKernel) uplink() int {
	idx := k.addLink("wan0", net.FlagUp|net.FlagRunning|net.FlagBroadcast)
	k.addLink("vpn0", net.FlagUp|net.FlagRunning|net.FlagPointToPoint)
	k.addAddr(idx, "198.51.100.2/24")
	k.addAddr(idx, "2001:db8:100::2/64")
	k.addAddr(idx, "fe80::2/64")
	k.mainRoute(idx, "203.0.113.10/32", "198.51.100.1")
	k.mainRoute(idx, "2001:db8:ffff::10/128", "2001:db8:100::1")
	return idx
}

func (k *fakeKernel) addAddr(idx int, s string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := netip.MustParsePrefix(s)
	scope := unix.RT_SCOPE_UNIVERSE
	if p.Addr().IsLinkLocalUnicast() {
		scope = unix.RT_SCOPE_LINK
	}
	k.addrs[idx] = append(k.addrs[idx], netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Scope: scope, LinkIndex: idx})
}

func (k *fakeKernel) delAddrs(idx int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.addrs, idx)
}

func (k *fakeKernel) mainRoute(idx int, dst, gw string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := netip.MustParsePrefix(dst)
	fam := unix.AF_INET
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	k.routes = append(k.routes, netlink.Route{Family: fam, Dst: ipnetOf(p), Gw: netip.MustParseAddr(gw).AsSlice(),
		LinkIndex: idx, Table: tableMain, Protocol: unix.RTPROT_BOOT, Type: unix.RTN_UNICAST})
}

// setLink changes a link's flags. Going down (admin or carrier) deletes
// the routes through it, IPv4 and IPv6, as the kernel does for admin down;
// for carrier loss the kernel keeps them flagged linkdown.
func (k *fakeKernel) setLink(name string, up, carrier bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.linkLocked(name)
	l.Flags &^= net.FlagUp | net.FlagRunning
	if up {
		l.Flags |= net.FlagUp
	}
	if up && carrier {
		l.Flags |= net.FlagRunning
	}
	switch {
	case !up:
		k.routes = slices.DeleteFunc(k.routes, func(r netlink.Route) bool { return r.LinkIndex == l.Index && r.Type == unix.RTN_UNICAST })
	case !carrier:
		for i := range k.routes {
			if k.routes[i].LinkIndex == l.Index {
				k.routes[i].Flags |= unix.RTNH_F_LINKDOWN
			}
		}
	default:
		for i := range k.routes {
			if k.routes[i].LinkIndex == l.Index {
				k.routes[i].Flags &^= unix.RTNH_F_LINKDOWN
			}
		}
	}
}

// deleteRuleByHand deletes the first rule at prio, as `ip rule del pref`.
func (k *fakeKernel) deleteRuleByHand(fam, prio int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, r := range k.rules {
		if r.Family == fam && r.Priority == prio {
			k.rules = slices.Delete(k.rules, i, i+1)
			return true
		}
	}
	return false
}

// deleteRouteByHand deletes the i-th route of table t (modulo their count).
func (k *fakeKernel) deleteRouteByHand(t, i int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	var idx []int
	for j, r := range k.routes {
		if r.Table == t {
			idx = append(idx, j)
		}
	}
	if len(idx) == 0 {
		return false
	}
	j := idx[i%len(idx)]
	k.routes = slices.Delete(k.routes, j, j+1)
	return true
}

// insertRule adds a rule bypassing NLM_F_EXCL (another tool, or a rule
// added without pref twice).
func (k *fakeKernel) insertRule(r netlink.Rule) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.insertRuleLocked(r)
}

func (k *fakeKernel) insertRuleLocked(r netlink.Rule) {
	normalizeRule(&r)
	i := slices.IndexFunc(k.rules, func(o netlink.Rule) bool { return o.Family == r.Family && o.Priority > r.Priority })
	if i < 0 {
		k.rules = append(k.rules, r)
		return
	}
	k.rules = slices.Insert(k.rules, i, r)
}

func normalizeRule(r *netlink.Rule) {
	if r.Mark != 0 && r.Mask == nil {
		m := uint32(0xffffffff)
		r.Mask = &m
	}
	if r.Family == 0 {
		r.Family = unix.AF_INET
		if r.Src != nil && r.Src.IP.To4() == nil {
			r.Family = unix.AF_INET6
		}
	}
}

func (k *fakeKernel) failLocked(op string) error {
	for prefix, err := range k.failOp {
		if strings.HasPrefix(op, prefix) {
			delete(k.failOp, prefix)
			return err
		}
	}
	return nil
}

// afterLocked returns the error to answer after an op took effect.
func (k *fakeKernel) afterLocked(op string) error {
	for prefix, err := range k.failAfter {
		if strings.HasPrefix(op, prefix) {
			delete(k.failAfter, prefix)
			return err
		}
	}
	return nil
}

func (k *fakeKernel) dumpLocked() error {
	if k.dumpInt > 0 {
		k.dumpInt--
		return netlink.ErrDumpInterrupted
	}
	return nil
}

// nlHandle

func (k *fakeKernel) LinkByName(name string) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.linkLocked(name)
	if l == nil {
		return nil, netlink.LinkNotFoundError{}
	}
	c := *l
	return &c, nil
}

func (k *fakeKernel) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.Link
	for _, l := range k.links {
		c := *l
		out = append(out, &c)
	}
	return out, nil
}

func (k *fakeKernel) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.Addr
	for _, a := range k.addrs[link.Attrs().Index] {
		if (a.IP.To4() != nil) == (family == unix.AF_INET) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (k *fakeKernel) RuleList(family int) ([]netlink.Rule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.dumpLocked(); err != nil {
		return nil, err
	}
	var out []netlink.Rule
	for _, r := range k.rules {
		if r.Family == family {
			out = append(out, r)
		}
	}
	return out, nil
}

func (k *fakeKernel) RuleAdd(r *netlink.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := *r
	normalizeRule(&c)
	k.calls = append(k.calls, "add rule "+ruleKey(&c))
	if err := k.failLocked("add rule"); err != nil {
		if errors.Is(err, errSilentDrop) {
			return nil // acknowledged, not installed: a kernel before 4.17 with ipproto/dport
		}
		return err
	}
	if r.Priority < 0 {
		return errors.New("fake: rule without priority")
	}
	for i := range k.rules {
		if ruleKey(&k.rules[i]) == ruleKey(&c) {
			return unix.EEXIST
		}
	}
	k.insertRuleLocked(c)
	return k.afterLocked("add rule")
}

func (k *fakeKernel) RuleDel(r *netlink.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := *r
	normalizeRule(&c)
	k.calls = append(k.calls, "del rule "+ruleKey(&c))
	if err := k.failLocked("del rule"); err != nil {
		return err
	}
	for i := range k.rules {
		if ruleKey(&k.rules[i]) == ruleKey(&c) {
			k.rules = slices.Delete(k.rules, i, i+1)
			return k.afterLocked("del rule")
		}
	}
	return unix.ENOENT
}

func (k *fakeKernel) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.dumpLocked(); err != nil {
		return nil, err
	}
	var out []netlink.Route
	for _, r := range k.routes {
		switch {
		case r.Family != family:
		case mask&netlink.RT_FILTER_TABLE == 0 && r.Table != tableMain:
		case mask&netlink.RT_FILTER_TABLE != 0 && filter.Table != 0 && r.Table != filter.Table:
		case mask&netlink.RT_FILTER_OIF != 0 && r.LinkIndex != filter.LinkIndex:
		default:
			out = append(out, r)
		}
	}
	return out, nil
}

func (k *fakeKernel) RouteReplace(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := *r
	if c.Family == 0 {
		c.Family = unix.AF_INET
		if c.Dst.IP.To4() == nil {
			c.Family = unix.AF_INET6
		}
	}
	names := k.namesLocked()
	k.calls = append(k.calls, "replace route "+routeKey(&c, names))
	if err := k.failLocked("replace route"); err != nil {
		return err
	}
	if c.Type == unix.RTN_UNICAST {
		var l *netlink.Device
		for _, x := range k.links {
			if x.Index == c.LinkIndex {
				l = x
			}
		}
		if l == nil || l.Flags&net.FlagUp == 0 {
			return unix.ENETUNREACH
		}
		if c.Family == unix.AF_INET6 && l.Flags&net.FlagRunning == 0 {
			return unix.EHOSTUNREACH // IPv6 refuses next hops on a link without carrier
		}
	} else if c.Family == unix.AF_INET6 {
		c.LinkIndex = 1 // IPv6 reject routes read back on lo
	}
	c.Flags = 0
	id := routeID(&c)
	for i := range k.routes {
		if routeID(&k.routes[i]) == id {
			k.routes[i] = c
			return nil
		}
	}
	k.routes = append(k.routes, c)
	return nil
}

func (k *fakeKernel) RouteDel(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	names := k.namesLocked()
	k.calls = append(k.calls, "del route "+routeKey(r, names))
	if err := k.failLocked("del route"); err != nil {
		return err
	}
	id := routeID(r)
	for i, o := range k.routes {
		if routeID(&o) == id && (r.Gw == nil || r.Gw.Equal(o.Gw)) && (r.Type == 0 || r.Type == o.Type) {
			k.routes = slices.Delete(k.routes, i, i+1)
			return k.afterLocked("del route")
		}
	}
	if r.Family == unix.AF_INET6 {
		return unix.ENOENT
	}
	return unix.ESRCH
}

func (k *fakeKernel) ConntrackDeleteFilters(_ netlink.ConntrackTableType, family netlink.InetFamily, filters ...netlink.CustomConntrackFilter) (uint, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n uint
	k.flows = slices.DeleteFunc(k.flows, func(f *netlink.ConntrackFlow) bool {
		if (f.Forward.DstIP.To4() != nil) != (family == unix.AF_INET) {
			return false
		}
		for _, flt := range filters {
			if flt.MatchConntrackFlow(f) {
				n++
				return true
			}
		}
		return false
	})
	return n, nil
}

func (k *fakeKernel) namesLocked() linkNamer {
	n := linkNamer{}
	for _, l := range k.links {
		n[l.Index] = l.Name
	}
	return n
}

// render prints every rule and every route outside main, as ip lists
// them, in a canonical order.
func (k *fakeKernel) render() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	names := k.namesLocked()
	var lines []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		for i := range k.rules {
			if k.rules[i].Family == fam {
				lines = append(lines, ruleKey(&k.rules[i]))
			}
		}
	}
	var routes []netlink.Route
	for _, r := range k.routes {
		if r.Table != tableMain {
			routes = append(routes, r)
		}
	}
	slices.SortFunc(routes, func(a, b netlink.Route) int {
		return cmp.Or(cmp.Compare(a.Family, b.Family), cmp.Compare(a.Table, b.Table),
			strings.Compare(routeKey(&a, names), routeKey(&b, names)))
	})
	for i := range routes {
		lines = append(lines, routeKey(&routes[i], names))
	}
	return strings.Join(lines, "\n") + "\n"
}

func (k *fakeKernel) takeCalls() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.calls
	k.calls = nil
	return c
}

func (k *fakeKernel) String() string {
	return fmt.Sprintf("fakeKernel{%d rules, %d routes}", len(k.rules), len(k.routes))
}

// errSilentDrop makes the fake acknowledge an add without doing it.
var errSilentDrop = errors.New("fake: acknowledge and drop")

// fakeEvents is an eventSource fed by the test.
type fakeEvents struct {
	ch     chan []rawMessage
	closed chan struct{}
	once   sync.Once
}

func newFakeEvents() *fakeEvents {
	return &fakeEvents{ch: make(chan []rawMessage, 16), closed: make(chan struct{})}
}

func (f *fakeEvents) Receive() ([]rawMessage, error) {
	select {
	case m := <-f.ch:
		return m, nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

func (f *fakeEvents) Close() { f.once.Do(func() { close(f.closed) }) }

// send delivers a notification that is relevant to everything: a rule
// deletion in another protocol.
func (f *fakeEvents) send(typ uint16, data []byte) { f.ch <- []rawMessage{{typ: typ, data: data}} }
