package policy

import (
	"context"
	"fmt"

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
	return rep, out.err
}
