package policy

import (
	"net/http"
	"slices"

	"github.com/mediaedge/mediaedge/internal/control"
)

// statusOf builds the status of a pass. The caller holds applyMu.
func (m *Manager) statusOf(out *passOutcome) Status {
	cfg := &m.cfg
	s := Status{
		Mode:        cfg.Mode,
		LastTrigger: out.trigger,
		Warnings:    out.warns,
		Media: MediaStatus{
			Match:            cfg.Match,
			Sources:          m.media.Sources,
			IPv4Prefixes:     len(m.media.family(true)),
			IPv6Prefixes:     len(m.media.family(false)),
			UDPPorts:         portsString(m.media.UDPPorts),
			PortOnlyUDPPorts: portsString(m.media.PortOnly),
		},
	}
	at := out.at
	s.LastReconcile = &at
	f := &out.facts
	s.Uplink = UplinkStatus{Interface: f.name, State: f.state}
	if f.index > 0 {
		s.Uplink.Index = f.index
	}
	fams := cfg.familySet()
	for i, on := range []bool{fams.v4, fams.v6} {
		if !on {
			continue
		}
		ff := &f.fam[i]
		fs := &FamilyStatus{Usable: ff.usable, GatewaySource: ff.gwFrom}
		if !ff.usable || f.state == uplinkUnknown || f.state == uplinkMissing {
			fs.Reason = ff.reason
		}
		if ff.gw.IsValid() {
			fs.Gateway = ff.gw.String()
		}
		for _, a := range ff.addrs {
			fs.Addresses = append(fs.Addresses, a.String())
		}
		if i == 0 {
			s.Uplink.IPv4 = fs
		} else {
			s.Uplink.IPv6 = fs
		}
	}
	names := linkNamer{}
	if out.k != nil {
		names = out.k.names
		for i := range out.k.owned {
			s.Actual = append(s.Actual, ruleKey(&out.k.owned[i]))
		}
		for i := range out.k.routes {
			s.Actual = append(s.Actual, routeKey(&out.k.routes[i], names))
		}
	}
	for i := range out.desired.rules {
		s.Desired = append(s.Desired, ruleKey(&out.desired.rules[i]))
	}
	for i := range out.desired.routes {
		s.Desired = append(s.Desired, routeKey(&out.desired.routes[i], names))
	}
	s.Pending = commands(out.pending)
	switch {
	case out.err != nil:
		s.State, s.Detail, s.LastError = "degraded", out.err.Error(), out.err.Error()
	case cfg.Mode == ModePlan:
		s.State, s.Detail = "running", "plan mode: the kernel is not changed"
	case f.state != uplinkUp:
		s.State, s.Detail = "degraded", "uplink "+f.name+" is "+f.state+": media "+downBehaviour(cfg)
	default:
		s.State = "running"
		for i, on := range []bool{fams.v4, fams.v6} {
			if on && !f.fam[i].usable {
				s.State, s.Detail = "degraded", f.fam[i].reason
			}
		}
	}
	return s
}

func downBehaviour(cfg *Config) string {
	if cfg.OnUplinkDown == UplinkDownFailClosed {
		return "is refused (fail_closed)"
	}
	return "falls back to the VPN"
}

// Status returns the component's status for GET /v1/status: the state,
// uplink, media summary and last repair, without the rule listings (GET
// /v1/policy/status has them).
func (m *Manager) Status() Status {
	s := m.snapshot()
	s.Desired, s.Actual = nil, nil
	return s
}

// FullStatus returns the status with the rule listings of the last pass.
func (m *Manager) FullStatus() Status { return m.snapshot() }

func (m *Manager) snapshot() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.snap
	s.Desired = slices.Clone(s.Desired)
	s.Actual = slices.Clone(s.Actual)
	s.Pending = slices.Clone(s.Pending)
	s.Warnings = slices.Clone(s.Warnings)
	return s
}

// inspect refreshes the view of the kernel without changing it and
// returns the status. Used by the status endpoint so that "actual" is
// current, not the last pass's.
func (m *Manager) inspect() Status {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if m.rec == nil || m.closed {
		return m.snapshot()
	}
	s := m.snapshot()
	facts, err := m.rec.resolveUplink(&m.cfg, &m.mem)
	if err != nil {
		return s
	}
	if m.cfg.Mode == ModePlan && (facts.state == uplinkMissing || facts.state == uplinkUnknown) {
		st := facts.state
		facts = placeholderUplink(&m.cfg)
		facts.state = st
	}
	k, err := m.rec.observe(m.protos, m.tables)
	if err != nil {
		return s
	}
	k.names[placeholderIndex] = facts.name
	out := passOutcome{trigger: s.LastTrigger, facts: facts, desired: desire(&m.cfg, &m.media, &facts), k: k}
	out.pending = diff(&out.desired, k, m.cfg.Tables.Media, m.cfg.Tables.Direct)
	out.warns = s.Warnings
	if s.LastError != "" {
		out.err = errString(s.LastError)
	}
	fresh := m.statusOf(&out)
	fresh.LastReconcile, fresh.Repairs, fresh.LastRepair = s.LastReconcile, s.Repairs, s.LastRepair
	return fresh
}

type errString string

func (e errString) Error() string { return string(e) }

func (m *Manager) serveStatus(w http.ResponseWriter, _ *http.Request) {
	m.applyMu.Lock()
	started := m.started
	m.applyMu.Unlock()
	if !started {
		control.WriteError(w, http.StatusServiceUnavailable, control.CodeUnavailable, "policy component is not running (disabled or not started)")
		return
	}
	control.WriteJSON(w, http.StatusOK, m.inspect())
}

func (m *Manager) serveReconcile(w http.ResponseWriter, _ *http.Request) {
	m.applyMu.Lock()
	if !m.started || m.closed {
		m.applyMu.Unlock()
		control.WriteError(w, http.StatusServiceUnavailable, control.CodeUnavailable, "policy component is not running (disabled or not started)")
		return
	}
	out := m.passLocked(triggerAPI, false)
	m.applyMu.Unlock()
	res := ReconcileResult{Applied: commands(out.done), Status: m.snapshot()}
	if res.Applied == nil {
		res.Applied = []string{}
	}
	if out.err != nil {
		res.Error = out.err.Error()
	}
	control.WriteJSON(w, http.StatusOK, res)
}
