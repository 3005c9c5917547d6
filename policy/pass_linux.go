package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mediaedge/mediaedge/internal/config"
)

// passOutcome is what one pass saw and did.
type passOutcome struct {
	trigger string
	at      time.Time
	facts   uplinkFacts
	desired desired
	k       *kernelState // after the changes, when they were read back
	done    []op
	pending []op // still to do: the plan (plan mode) or what failed
	err     error
	repair  bool
	warns   []string
	flushed uint
}

// passLocked runs one reconcile pass: learn the uplink, compute the desired
// state, read the kernel, and in enforce mode apply the difference and read
// it back. allTables scans every table for owned routes (start-up). The
// caller holds applyMu.
func (m *Manager) passLocked(trigger string, allTables bool) passOutcome {
	cfg := &m.cfg
	out := passOutcome{trigger: trigger, at: m.hooks.now()}
	m.metrics.reconciles.WithLabelValues(trigger).Inc()
	defer func() { m.publishLocked(&out) }()

	if m.rec == nil {
		out.facts = placeholderUplink(cfg)
		out.desired = desire(cfg, &m.media, &out.facts)
		out.k = &kernelState{names: linkNamer{placeholderIndex: out.facts.name}}
		out.pending = diff(&out.desired, out.k, cfg.Tables.Media, cfg.Tables.Direct)
		return out
	}
	facts, err := m.rec.resolveUplink(cfg, &m.mem)
	if err != nil {
		out.err = fmt.Errorf("policy: reading the uplink: %w", err)
		return out
	}
	if cfg.Mode == ModePlan && (facts.state == uplinkMissing || facts.state == uplinkUnknown) {
		st := facts.state
		facts = placeholderUplink(cfg)
		facts.state = st
	}
	out.facts = facts
	out.desired = desire(cfg, &m.media, &facts)
	tables := m.tables
	if allTables {
		tables = nil
	}
	k, err := m.rec.observe(m.protos, tables)
	if err != nil {
		out.err = fmt.Errorf("policy: reading rules and routes: %w", err)
		return out
	}
	k.names[placeholderIndex] = facts.name
	out.k = k
	ops := diff(&out.desired, k, cfg.Tables.Media, cfg.Tables.Direct)
	if cfg.Mode == ModePlan {
		out.pending = ops
		out.warns = m.warningsLocked(k)
		return out
	}

	// Route deletes come last, so a flush right after the route replaces
	// misses them; a second flush after the whole pass covers those.
	flushed := 0
	res := m.rec.apply(ops, func(done []op) {
		if cfg.ConntrackFlush && len(done) > 0 {
			out.flushed += m.flushConntrackLocked(done)
			flushed = len(done)
		}
	})
	out.done, out.err = res.done, res.err()
	if cfg.ConntrackFlush && len(res.done) > flushed {
		out.flushed += m.flushConntrackLocked(res.done[flushed:])
	}
	if len(ops) > 0 {
		// Read back: a kernel that does not know an attribute (ipproto,
		// dport and rule protocol need 4.17) may accept the rule without
		// it.
		if k2, err := m.rec.observe(m.protos, tables); err == nil {
			k2.names[placeholderIndex] = facts.name
			out.k = k2
			out.pending = diff(&out.desired, k2, cfg.Tables.Media, cfg.Tables.Direct)
			if len(out.pending) > 0 && out.err == nil && res.skipped == 0 {
				out.err = fmt.Errorf("%w: still to do after apply: %s", ErrReadback, strings.Join(commands(out.pending), "; "))
			}
		} else if out.err == nil {
			out.err = fmt.Errorf("policy: reading back rules and routes: %w", err)
		}
	}
	out.repair = m.isRepairLocked(res.done, k.names)
	m.lastActual = ownedKeys(out.k)
	out.warns = m.warningsLocked(out.k)
	return out
}

// isRepairLocked reports whether done undid someone else's change: it
// re-added an object that the previous pass left in the kernel, or deleted
// an owned object the previous pass had not seen. Changes that follow the
// configuration or the uplink's state are not repairs.
func (m *Manager) isRepairLocked(done []op, names linkNamer) bool {
	if m.lastActual == nil {
		return false
	}
	for _, o := range done {
		key := o.key(names)
		if o.kind.adds() == m.lastActual[key] {
			return true
		}
	}
	return false
}

// ownedKeys returns the keys of the owned objects in k.
func ownedKeys(k *kernelState) map[string]bool {
	keys := map[string]bool{}
	for i := range k.owned {
		keys[ruleKey(&k.owned[i])] = true
	}
	for i := range k.routes {
		keys[routeKey(&k.routes[i], k.names)] = true
	}
	return keys
}

// placeholderUplink stands for an uplink plan mode cannot see: every family
// usable, next hop unknown.
func placeholderUplink(cfg *Config) uplinkFacts {
	name := cfg.Uplink.Interface
	if name == "" {
		name = "<uplink>"
	}
	up := uplinkFacts{name: name, index: placeholderIndex, state: uplinkUnknown}
	for i := range up.fam {
		up.fam[i] = famFacts{usable: true, reason: "uplink not resolved (plan only)"}
	}
	if a, err := parseAddr(cfg.Uplink.Gateway4); err == nil {
		up.fam[0].gw, up.fam[0].gwFrom = a, "config"
	}
	if a, err := parseAddr(cfg.Uplink.Gateway6); err == nil {
		up.fam[1].gw, up.fam[1].gwFrom = a, "config"
	}
	return up
}

// flushConntrackLocked deletes the conntrack entries of media flows whose
// route changed in done, and schedules a second deletion after
// reflushDelay of the entries made since by the media server's side:
// packets already in flight on the old path (a reply coming back through
// the VPN) can create a fresh, NAT-less entry right after the first flush,
// and that entry would pin the flow to the wrong source address for as
// long as the media keeps it alive. Kernels without
// conntrack answer with an error, logged at debug: there is then nothing
// to flush.
func (m *Manager) flushConntrackLocked(done []op) uint {
	fs := flowFilters(&m.cfg, &m.media, done)
	total := m.deleteFlowsLocked(fs)
	if len(fs) > 0 && m.hooks.reflushDelay > 0 && !m.closed {
		if m.reflushFilters == nil {
			m.reflushFilters = map[int]*flowFilter{}
		}
		for fam, f := range fs {
			if g := m.reflushFilters[fam]; g != nil {
				g.merge(f)
			} else {
				r := *f
				r.reverseOnly = true
				m.reflushFilters[fam] = &r
			}
		}
		if m.reflush == nil {
			m.reflush = time.AfterFunc(m.hooks.reflushDelay, m.reflushConntrack)
		} else {
			m.reflush.Reset(m.hooks.reflushDelay)
		}
	}
	return total
}

// reflushConntrack is the delayed second flush; it runs on a timer and
// ends at once after Close.
func (m *Manager) reflushConntrack() {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	fs := m.reflushFilters
	m.reflushFilters, m.reflush = nil, nil
	if m.closed || m.rec == nil {
		return
	}
	m.deleteFlowsLocked(fs)
}

func (m *Manager) deleteFlowsLocked(fs map[int]*flowFilter) uint {
	var total uint
	for family, f := range fs {
		n, err := m.rec.h.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.InetFamily(family), f)
		if err != nil {
			m.log.Debug("conntrack flush failed", "family", famFlag(family), "err", err)
			continue
		}
		if n > 0 {
			m.log.Info("deleted conntrack entries of media flows whose path changed", "family", famFlag(family), "entries", n)
		}
		total += n
	}
	m.metrics.conntrack.Add(float64(total))
	return total
}

func (m *Manager) warningsLocked(k *kernelState) []string {
	var w []string
	if k != nil {
		w = foreignRuleWarnings(&m.cfg, k.rules, m.protos)
		m.metrics.foreignRules.Set(float64(len(w)))
		if k.linkdown > 0 {
			w = append(w, fmt.Sprintf("%d of mediaedge's routes are flagged linkdown (carrier lost)", k.linkdown))
		}
	}
	w = append(w, checkSysctls(&m.cfg, m.hooks.readSysctl)...)
	if m.watchLost.Load() {
		w = append(w, "netlink notifications stopped: drift is repaired only every reconcile_interval")
	}
	return w
}

// publishLocked logs what changed, updates the metrics and the status
// snapshot.
func (m *Manager) publishLocked(out *passOutcome) {
	cfg := &m.cfg
	log := m.log.With("trigger", out.trigger)
	for i, fam := range []Family{FamilyIPv4, FamilyIPv6} {
		m.metrics.uplinkUp.WithLabelValues(string(fam)).Set(b2f(out.facts.fam[i].usable))
	}
	m.metrics.mediaPrefixes.WithLabelValues(string(FamilyIPv4)).Set(float64(len(m.media.family(true))))
	m.metrics.mediaPrefixes.WithLabelValues(string(FamilyIPv6)).Set(float64(len(m.media.family(false))))

	up := [2]bool{out.facts.fam[0].usable, out.facts.fam[1].usable}
	if out.facts.state != m.lastSt || up != m.lastUp {
		log.Info("uplink state", "interface", out.facts.name, "state", out.facts.state,
			"ipv4", famSummary(&out.facts.fam[0]), "ipv6", famSummary(&out.facts.fam[1]))
		m.lastSt, m.lastUp = out.facts.state, up
	}
	if cfg.Mode == ModePlan {
		if out.trigger == triggerStart || out.trigger == triggerReload {
			if len(out.pending) == 0 {
				log.Info("plan: the kernel already holds the rule set")
			}
			for _, o := range out.pending {
				log.Info("plan: would run", "cmd", o.cmd)
			}
		}
	} else {
		for _, o := range out.done {
			log.Debug("applied", "cmd", o.cmd)
			if o.kind.adds() {
				m.metrics.changes.WithLabelValues("add").Inc()
			} else {
				m.metrics.changes.WithLabelValues("delete").Inc()
			}
		}
		switch {
		case out.repair:
			m.metrics.repairs.Inc()
			log.Warn("repaired drift", "changes", commands(out.done))
		case len(out.done) > 0:
			log.Info("applied rule set", "changes", len(out.done))
		}
	}
	if out.err != nil {
		m.metrics.errors.Inc()
		log.Warn("reconcile incomplete; retrying", "err", out.err)
	} else if cfg.Mode == ModeEnforce {
		m.metrics.lastReconcile.Set(float64(out.at.UnixNano()) / 1e9)
	}
	if !slices.Equal(out.warns, m.lastWarn) {
		for _, w := range out.warns {
			if !slices.Contains(m.lastWarn, w) {
				log.Warn("policy warning", "warning", w)
			}
		}
		m.lastWarn = out.warns
	}
	if out.k != nil {
		m.metrics.rulesOwned.Set(float64(len(out.k.owned)))
		m.metrics.routesOwned.Set(float64(len(out.k.routes)))
	}
	m.filter.Store(&eventFilter{uplink: cfg.Uplink.Interface, index: out.facts.index, tables: slices.Clone(m.tables), protos: slices.Clone(m.protos)})

	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.snap
	prevRepairs, prevRepair := s.Repairs, s.LastRepair
	*s = m.statusOf(out)
	s.Repairs, s.LastRepair = prevRepairs, prevRepair
	if out.repair {
		s.Repairs++
		s.LastRepair = &Repair{At: out.at, Trigger: out.trigger, Changes: commands(out.done)}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func famSummary(f *famFacts) string {
	if f.usable {
		return "usable"
	}
	return "unusable: " + f.reason
}

func portsString(rs []config.PortRange) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

func parseAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }
