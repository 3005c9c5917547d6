package policy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/mediaedge/mediaedge/internal/component"
)

// Plan reads the kernel and returns the changes Apply would make for cfg,
// changing nothing. Like the daemon's first pass it scans every table for
// objects in mediaedge's protocol.
func Plan(ctx context.Context, cfg Config) (Report, error) {
	return oneShot(ctx, cfg, ModePlan, nsHandle{ns: netns.None()})
}

// Apply installs the rule set for cfg once, as the daemon's first pass
// does (objects of an earlier configuration removed, adding before
// deleting), and returns what it changed. Nothing guards the result
// afterwards: that is the daemon's job.
func Apply(ctx context.Context, cfg Config) (Report, error) {
	return oneShot(ctx, cfg, ModeEnforce, nsHandle{ns: netns.None()})
}

// Inspect reads the kernel for cfg without changing it and reports what
// the daemon's status would: the configured mode (not plan), the desired
// rules and routes against the kernel's, and as Changes what a pass would
// still do. It is `policy status` when no daemon answers.
func Inspect(ctx context.Context, cfg Config) (Report, error) {
	mode := cfg.Mode
	rep, err := oneShot(ctx, cfg, ModePlan, nsHandle{ns: netns.None()})
	if mode == ModeEnforce && rep.Status.Mode != "" {
		rep.Status.Mode = mode
		if rep.Status.LastError == "" {
			rep.Status.State, rep.Status.Detail = "running", "read from the kernel: no daemon guards the rules"
			if n := len(rep.Changes); n > 0 {
				rep.Status.State = "degraded"
				rep.Status.Detail = fmt.Sprintf("read from the kernel: %d change(s) to reach the configuration, and no daemon to make them", n)
			}
		}
	}
	return rep, err
}

// Flush deletes every rule and route whose protocol is protocol, rules
// first, and returns the ip commands that did it. The kernel's own rules
// and everyone else's objects are left alone.
func Flush(ctx context.Context, protocol int) ([]string, error) {
	return flushIn(nsHandle{ns: netns.None()}, protocol)
}

func flushIn(ns nsHandle, protocol int) ([]string, error) {
	if protocol < 1 || protocol > 255 {
		return nil, fmt.Errorf("policy: protocol %d is out of range (1 to 255)", protocol)
	}
	h, closeH, err := ns.open()
	if err != nil {
		return nil, err
	}
	defer closeH()
	return (&reconciler{h: h}).flush([]uint8{uint8(protocol)})
}

func oneShot(_ context.Context, cfg Config, mode Mode, ns nsHandle) (Report, error) {
	cfg.Mode = mode
	hk := defaultHooks(ns)
	m, err := newManager(cfg, component.Deps{}, hk)
	if err != nil {
		return Report{}, err
	}
	if m.media, err = loadMedia(&m.cfg); err != nil {
		return Report{}, err
	}
	h, closeH, err := hk.open()
	if err != nil {
		return Report{}, err
	}
	defer closeH()
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.rec, m.started = &reconciler{h: h}, true
	if mode == ModeEnforce {
		if err := m.checkUplinkLocked(&m.cfg); err != nil {
			return Report{}, err
		}
	}
	out := m.passLocked(triggerAPI, true)
	rep := Report{Status: m.snapshot()}
	if mode == ModeEnforce {
		rep.Changes = commands(out.done)
	} else {
		rep.Changes = commands(out.pending)
	}
	// The delayed second conntrack flush (flushConntrackLocked) runs here,
	// on the handle that is still open, instead of on a timer that would
	// fire after the handle is closed; m.rec = nil makes a timer that
	// fired meanwhile (and waits for applyMu) do nothing.
	if m.reflush != nil {
		m.reflush.Stop()
		fs := m.reflushFilters
		m.reflush, m.reflushFilters = nil, nil
		time.Sleep(m.hooks.reflushDelay)
		m.deleteFlowsLocked(fs)
	}
	m.rec = nil
	if out.err == nil && mode == ModeEnforce {
		return rep, noDirectPath(rep.Status.Uplink)
	}
	return rep, out.err
}

// noDirectPath returns ErrNoDirectPath, with each family's reason, when no
// configured family of the uplink is usable.
func noDirectPath(u UplinkStatus) error {
	var reasons []string
	for _, f := range []struct {
		name string
		s    *FamilyStatus
	}{{"ipv4", u.IPv4}, {"ipv6", u.IPv6}} {
		if f.s == nil {
			continue
		}
		if f.s.Usable {
			return nil
		}
		reasons = append(reasons, f.name+": "+f.s.Reason)
	}
	if len(reasons) == 0 {
		return nil
	}
	return fmt.Errorf("%w (uplink %s: %s)", ErrNoDirectPath, u.Interface, strings.Join(reasons, "; "))
}
