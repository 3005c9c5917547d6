package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nlHandle lists the *netlink.Handle methods the policy component calls:
// the seam between the reconciler and the kernel. Tests use a fake that
// keeps tables in memory and renders them as ip text.
type nlHandle interface {
	LinkByName(name string) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RuleList(family int) ([]netlink.Rule, error)
	RuleAdd(rule *netlink.Rule) error
	RuleDel(rule *netlink.Rule) error
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
	ConntrackDeleteFilters(table netlink.ConntrackTableType, family netlink.InetFamily, filters ...netlink.CustomConntrackFilter) (uint, error)
}

var _ nlHandle = (*netlink.Handle)(nil)

// dumpAttempts bounds retries of a netlink dump that the kernel marked
// interrupted (NLM_F_DUMP_INTR: the table changed while it was read).
const dumpAttempts = 5

// kernelState is one observation of the kernel: every rule, and the rules
// and routes in mediaedge's protocols.
type kernelState struct {
	rules    []netlink.Rule // all rules of both families, kernel order
	owned    []netlink.Rule // rules in an owned protocol
	routes   []netlink.Route
	names    linkNamer
	linkdown int // owned routes the kernel flags linkdown
}

// reconciler reads and changes the kernel through an nlHandle. It holds
// no state of its own; the Manager serialises its use.
type reconciler struct {
	h nlHandle
}

// retryDump runs a netlink dump until it is not interrupted.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var (
		v   []T
		err error
	)
	for range dumpAttempts {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return nil, fmt.Errorf("dump still interrupted after %d attempts: %w", dumpAttempts, err)
}

// observe reads all rules and the routes of the owned protocols in tables
// (every table when tables is nil: the start-up and flush scan that finds
// objects left by an earlier configuration).
func (r *reconciler) observe(protos []uint8, tables []int) (*kernelState, error) {
	k := &kernelState{names: linkNamer{}}
	links, err := retryDump(r.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		k.names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := retryDump(func() ([]netlink.Rule, error) { return r.h.RuleList(family) })
		if err != nil {
			return nil, fmt.Errorf("listing %s rules: %w", famFlag(family), err)
		}
		for _, rl := range rules {
			k.rules = append(k.rules, rl)
			if slices.Contains(protos, rl.Protocol) {
				k.owned = append(k.owned, rl)
			}
		}
		scan := tables
		if scan == nil {
			scan = []int{unix.RT_TABLE_UNSPEC} // with RT_FILTER_TABLE: all tables
		}
		for _, t := range scan {
			routes, err := retryDump(func() ([]netlink.Route, error) {
				return r.h.RouteListFiltered(family, &netlink.Route{Table: t}, netlink.RT_FILTER_TABLE)
			})
			if err != nil {
				return nil, fmt.Errorf("listing %s routes of table %s: %w", famFlag(family), tableName(t), err)
			}
			for _, rt := range routes {
				if !slices.Contains(protos, uint8(rt.Protocol)) {
					continue
				}
				if rt.Family == 0 {
					rt.Family = family
				}
				if rt.Flags&unix.RTNH_F_LINKDOWN != 0 {
					k.linkdown++
				}
				k.routes = append(k.routes, rt)
			}
		}
	}
	return k, nil
}

// opKind orders a plan: routes are added before the rules that point at
// them, and rules are deleted before the routes they point at, so that the
// rule set never sends traffic to a half-filled table.
type opKind int

const (
	opRouteReplace opKind = iota
	opRuleAdd
	opRuleDel
	opRouteDel
)

func (k opKind) adds() bool { return k == opRouteReplace || k == opRuleAdd }

// key returns the identity of the object o changes.
func (o *op) key(names linkNamer) string {
	if o.kind == opRuleAdd || o.kind == opRuleDel {
		return ruleKey(&o.rule)
	}
	return routeKey(&o.route, names)
}

// op is one kernel change and its ip command.
type op struct {
	kind  opKind
	rule  netlink.Rule
	route netlink.Route
	cmd   string
	// media marks route changes of media destinations, whose conntrack
	// entries are flushed after the change.
	media bool
}

// diff returns the changes that turn k into d: missing or different
// objects are added (routes replaced), owned objects not in d and exact
// duplicates are deleted. The result is sorted by kind then command, so
// the same states give the same plan.
func diff(d *desired, k *kernelState, mediaTable, directTable int) []op {
	var ops []op
	want := map[string]bool{}
	for i := range d.rules {
		want[ruleKey(&d.rules[i])] = true
	}
	have := map[string]int{}
	for i := range k.owned {
		rl := k.owned[i]
		key := ruleKey(&rl)
		have[key]++
		if !want[key] || have[key] > 1 {
			ops = append(ops, op{kind: opRuleDel, rule: rl, cmd: ruleCmd("del", &rl)})
		}
	}
	for i := range d.rules {
		rl := d.rules[i]
		if have[ruleKey(&rl)] == 0 {
			ops = append(ops, op{kind: opRuleAdd, rule: rl, cmd: ruleCmd("add", &rl)})
		}
	}

	isMedia := func(rt *netlink.Route) bool {
		return rt.Table == mediaTable || (rt.Table == directTable && (rt.Dst == nil || onesOf(rt) == 0))
	}
	wantRoute := map[string]bool{}
	wantSlot := map[string]bool{}
	for i := range d.routes {
		wantRoute[routeKey(&d.routes[i], k.names)] = true
		wantSlot[routeID(&d.routes[i])] = true
	}
	haveRoute := map[string]int{}
	slotCount := map[string]int{}
	for i := range k.routes {
		rt := k.routes[i]
		key := routeKey(&rt, k.names)
		haveRoute[key]++
		slotCount[routeID(&rt)]++
		if !wantRoute[key] || haveRoute[key] > 1 {
			ops = append(ops, op{kind: opRouteDel, route: rt, cmd: routeCmd("del", &rt, k.names), media: isMedia(&rt)})
		}
	}
	for i := range d.routes {
		rt := d.routes[i]
		if haveRoute[routeKey(&rt, k.names)] == 0 {
			ops = append(ops, op{kind: opRouteReplace, route: rt, cmd: routeCmd("replace", &rt, k.names), media: isMedia(&rt)})
		}
	}
	// A route alone in a slot that a desired route takes needs no delete:
	// the replace overwrites it, and a plan showing a delete would read as
	// a gap. Crowded slots (routes appended by someone else) keep their
	// deletes; the one the replace overwrote answers ESRCH.
	ops = slices.DeleteFunc(ops, func(o op) bool {
		id := routeID(&o.route)
		return o.kind == opRouteDel && wantSlot[id] && slotCount[id] == 1
	})
	slices.SortStableFunc(ops, func(a, b op) int {
		if a.kind != b.kind {
			return int(a.kind) - int(b.kind)
		}
		return strings.Compare(a.cmd, b.cmd)
	})
	return ops
}

func onesOf(rt *netlink.Route) int {
	ones, _ := rt.Dst.Mask.Size()
	return ones
}

// applyResult is what a pass did.
type applyResult struct {
	done []op    // changes the kernel accepted (or already had)
	errs []error // *OpError for each refused change
	// skipped counts deletes held back because an add failed: adding
	// before deleting means a failed add keeps the old objects in place.
	skipped int
}

func (a *applyResult) err() error { return errors.Join(a.errs...) }

// apply performs ops in order. EEXIST on add and ENOENT/ESRCH on delete
// are success: the kernel already is where the op wanted it. Deletes run
// only when every add succeeded, so that a change of media set or of
// layout never leaves a gap. afterRoutes, when not nil, runs once the
// routes are in place (before the rules change): the moment a path
// changed, for the conntrack flush.
func (r *reconciler) apply(ops []op, afterRoutes func(done []op)) applyResult {
	var res applyResult
	addFailed := false
	called := false
	for _, o := range ops {
		if !called && o.kind != opRouteReplace && afterRoutes != nil {
			afterRoutes(res.done)
			called = true
		}
		if !o.kind.adds() && addFailed {
			res.skipped++
			continue
		}
		var err error
		switch o.kind {
		case opRouteReplace:
			err = r.h.RouteReplace(&o.route)
		case opRuleAdd:
			err = r.h.RuleAdd(&o.rule)
			// RuleAdd sends NLM_F_EXCL: an identical rule with the same
			// priority answers EEXIST.
			if errors.Is(err, unix.EEXIST) {
				err = nil
			}
		case opRuleDel:
			err = r.h.RuleDel(&o.rule)
		case opRouteDel:
			err = r.h.RouteDel(&o.route)
		}
		if !o.kind.adds() && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)) {
			// IPv4 answers ESRCH for a missing route, IPv6 and rules
			// ENOENT: someone (or the kernel) deleted it first.
			err = nil
		}
		if err != nil {
			res.errs = append(res.errs, &OpError{Cmd: o.cmd, Err: err})
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				// Without CAP_NET_ADMIN every other change fails the same way.
				res.skipped += len(ops) - len(res.done) - len(res.errs)
				break
			}
			if o.kind.adds() {
				addFailed = true
			}
			continue
		}
		res.done = append(res.done, o)
	}
	if !called && afterRoutes != nil {
		afterRoutes(res.done)
	}
	return res
}

// flush deletes every rule and route in the owned protocols, rules first.
// It never touches other objects: `ip rule flush` would also delete the
// kernel's main and default rules.
func (r *reconciler) flush(protos []uint8) ([]string, error) {
	k, err := r.observe(protos, nil)
	if err != nil {
		return nil, fmt.Errorf("policy: reading rules and routes: %w", err)
	}
	var ops []op
	for _, rl := range k.owned {
		ops = append(ops, op{kind: opRuleDel, rule: rl, cmd: ruleCmd("del", &rl)})
	}
	for _, rt := range k.routes {
		ops = append(ops, op{kind: opRouteDel, route: rt, cmd: routeCmd("del", &rt, k.names)})
	}
	res := r.apply(ops, nil)
	cmds := make([]string, len(res.done))
	for i, o := range res.done {
		cmds[i] = o.cmd
	}
	return cmds, res.err()
}

// commands returns the ip commands of ops.
func commands(ops []op) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = o.cmd
	}
	return out
}
