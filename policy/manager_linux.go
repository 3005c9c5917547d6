package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
)

// hooks are the Manager's access to the kernel and the clock; New uses the
// current network namespace, tests a namespace or a fake of their own.
type hooks struct {
	open       func() (nlHandle, func(), error)
	subscribe  func() (eventSource, error)
	readSysctl func(path string) (string, error)
	now        func() time.Time
	// debounce coalesces a burst of notifications into one pass.
	debounce time.Duration
	// minRetry and maxRetry bound the back-off after a failed pass.
	minRetry, maxRetry time.Duration
	// reflushDelay is when conntrack entries of moved media flows are
	// deleted a second time (0: only once).
	reflushDelay time.Duration
}

func defaultHooks(ns nsHandle) hooks {
	return hooks{
		open:       ns.open,
		subscribe:  ns.subscribe,
		readSysctl: ns.readSysctl,
		now:        time.Now,
		debounce:   20 * time.Millisecond,
		minRetry:   100 * time.Millisecond,
		maxRetry:   5 * time.Second,
		// Long enough for packets queued on the old path (a VPN
		// round trip) to arrive, short next to a media flow's life.
		reflushDelay: 500 * time.Millisecond,
	}
}

// Manager is the policy component. It computes the split-tunnel rule set
// from its configuration and the uplink's state, installs it as a diff
// (mode enforce) and keeps it in place: it reacts to link, address, route
// and rule notifications within tens of milliseconds and re-checks
// everything every reconcile_interval. In mode plan it only reports what it
// would do.
//
// New creates it; Start runs the first pass and starts the watcher; Reload
// applies a new configuration without a gap in routing; Close stops the
// watcher and, with on_stop: remove, deletes everything mediaedge owns.
// All methods are safe for concurrent use; Close is idempotent.
type Manager struct {
	// set in New, never changed
	log     *slog.Logger
	metrics *metrics
	hooks   hooks
	kick    chan struct{} // capacity 1: a pending "reconcile soon"
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup

	// applyMu serialises passes (start, watcher, reload, control API,
	// close) and guards the following.
	applyMu sync.Mutex
	cfg     Config
	media   MediaSet
	rec     *reconciler // nil before Start, after Close, or without kernel access
	closeH  func()
	src     eventSource
	mem     gwMemory
	protos  []uint8 // protocols owned since start (a reload may change it)
	tables  []int   // tables used since start
	// lastActual holds the owned objects the last pass left in the
	// kernel, to tell repairs of drift from planned changes.
	lastActual map[string]bool
	lastUp     [2]bool
	lastSt     string
	lastWarn   []string
	started    bool
	applied    bool // enforce mode reached the kernel: Close may remove
	closed     bool
	// reflush is the pending second conntrack flush of reflushFilters.
	reflush        *time.Timer
	reflushFilters map[int]*flowFilter

	// filter is what the watcher uses to pick relevant notifications.
	filter    atomic.Pointer[eventFilter]
	watchLost atomic.Bool

	mu sync.Mutex
	// mu guards the following
	snap Status
}

// New returns a Manager for cfg. It registers the metrics and the control
// API routes (GET /v1/policy/status, POST /v1/policy/reconcile) and touches
// nothing else; Start does the work.
func New(cfg Config, d component.Deps) (*Manager, error) {
	return newManager(cfg, d, defaultHooks(nsHandle{ns: netns.None()}))
}

func newManager(cfg Config, d component.Deps, h hooks) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	met, err := newMetrics(d.Registry)
	if err != nil {
		return nil, fmt.Errorf("policy: registering metrics: %w", err)
	}
	m := &Manager{
		log:     log,
		metrics: met,
		hooks:   h,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		cfg:     cfg,
	}
	m.addLayoutLocked(&cfg)
	m.snap = Status{Status: component.Status{State: "stopped"}, Mode: cfg.Mode}
	if d.Control != nil {
		d.Control.HandleFunc("GET /v1/policy/status", m.serveStatus)
		d.Control.HandleFunc("POST /v1/policy/reconcile", m.serveReconcile)
	}
	return m, nil
}

// addLayoutLocked records cfg's protocol and tables as owned, so that
// objects of a previous layout are found and removed after a reload.
func (m *Manager) addLayoutLocked(cfg *Config) {
	if p := uint8(cfg.Protocol); !slices.Contains(m.protos, p) {
		m.protos = append(m.protos, p)
	}
	for _, t := range cfg.tables() {
		if !slices.Contains(m.tables, t) {
			m.tables = append(m.tables, t)
		}
	}
}

// Start loads the media set and runs the first pass. In enforce mode it
// first subscribes to notifications, checks that the uplink exists, scans
// every table for objects an earlier run left behind (a crash, another
// configuration), applies the difference, and starts the watcher. In plan
// mode it logs the plan and returns.
func (m *Manager) Start(ctx context.Context) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	switch {
	case m.closed:
		return ErrClosed
	case m.started:
		return errors.New("policy: Start called twice")
	}
	media, err := loadMedia(&m.cfg)
	if err != nil {
		return err
	}
	m.media = media
	m.logMedia("media set")
	enforce := m.cfg.Mode == ModeEnforce
	h, closeH, err := m.hooks.open()
	switch {
	case err != nil && enforce:
		return err
	case err != nil:
		m.log.Warn("plan mode without access to the kernel: the plan assumes empty tables", "err", err)
	default:
		m.rec, m.closeH = &reconciler{h: h}, closeH
	}
	m.started = true
	if enforce {
		if err := m.checkUplinkLocked(&m.cfg); err != nil {
			return err
		}
		// Subscribe before the first pass: a change during it is then
		// seen as a notification rather than lost.
		if m.src, err = m.hooks.subscribe(); err != nil {
			return err
		}
	}
	m.applied = enforce
	out := m.passLocked(triggerStart, true)
	if enforce && isPermission(out.err) {
		return fmt.Errorf("policy: enforce mode needs CAP_NET_ADMIN: %w", out.err)
	}
	if !enforce {
		return nil
	}
	m.wg.Add(2)
	go m.loop(out.err != nil)
	go m.watch(m.src)
	return nil
}

// checkUplinkLocked refuses a configuration whose uplink interface does not
// exist: an unknown name is a typo far more often than a link that is
// about to appear.
func (m *Manager) checkUplinkLocked(cfg *Config) error {
	if m.rec == nil {
		return nil
	}
	_, err := m.rec.h.LinkByName(cfg.Uplink.Interface)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("%w: %q (`ip link` lists the interfaces)", ErrUplinkNotFound, cfg.Uplink.Interface)
	}
	if err != nil {
		return fmt.Errorf("policy: looking up uplink %q: %w", cfg.Uplink.Interface, err)
	}
	return nil
}

// loadMedia reads cfg's media file, if any, and assembles the media set.
func loadMedia(cfg *Config) (MediaSet, error) {
	var file *MediaFile
	if cfg.Media.File != "" {
		f, err := LoadMediaFile(cfg.Media.File)
		if err != nil {
			return MediaSet{}, err
		}
		file = f
	}
	return assembleMedia(cfg, file)
}

func (m *Manager) logMedia(msg string) {
	m.log.Info(msg, "ipv4_prefixes", len(m.media.family(true)), "ipv6_prefixes", len(m.media.family(false)),
		"udp_ports", portsString(m.media.UDPPorts), "port_only_udp_ports", portsString(m.media.PortOnly),
		"sources", m.media.Sources)
}

// Reload applies cfg. A configuration that cannot be used (invalid, a media
// file that does not parse, overlapping media sets, an unknown uplink) is
// refused with an error and the running rule set stays as it is. Otherwise
// the new rule set is applied as a diff, adding before deleting, so media
// keeps flowing; kernel errors during that pass are logged, reported in
// status and retried, not returned. Changing mode needs a restart.
func (m *Manager) Reload(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if cfg.Mode != m.cfg.Mode {
		m.log.Warn("reload: changing policy.mode needs a restart; keeping the running mode", "running", m.cfg.Mode, "configured", cfg.Mode)
		cfg.Mode = m.cfg.Mode
	}
	media, err := loadMedia(&cfg)
	if err != nil {
		return err
	}
	if cfg.Mode == ModeEnforce && m.started {
		if err := m.checkUplinkLocked(&cfg); err != nil {
			return err
		}
	}
	m.cfg, m.media = cfg, media
	m.addLayoutLocked(&cfg)
	if !m.started {
		return nil
	}
	m.logMedia("media set reloaded")
	m.passLocked(triggerReload, false)
	return nil
}

// Close stops the watcher and, in enforce mode with on_stop: remove,
// deletes every rule and route in mediaedge's protocols, unless Start was
// refused before touching the kernel. It is idempotent and bounded: a few
// netlink requests.
func (m *Manager) Close() error {
	m.applyMu.Lock()
	if m.closed {
		m.applyMu.Unlock()
		return nil
	}
	m.closed = true
	src := m.src
	if m.reflush != nil {
		m.reflush.Stop()
		m.reflush, m.reflushFilters = nil, nil
	}
	m.applyMu.Unlock()

	close(m.done)
	if src != nil {
		src.Close() // the watcher's Receive returns an error
	}
	m.wg.Wait()

	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	var err error
	// A Manager that never reached the kernel (a start refused for bad
	// input) leaves the previous rule set in place.
	if m.rec != nil && m.applied && m.cfg.OnStop == OnStopRemove {
		var cmds []string
		cmds, err = m.rec.flush(m.protos)
		m.log.Info("removed mediaedge's rules and routes", "changes", len(cmds))
		if err != nil {
			m.log.Error("removing rules and routes on stop", "err", err)
		}
	}
	if m.closeH != nil {
		m.closeH()
	}
	m.rec, m.closeH = nil, nil
	m.mu.Lock()
	m.snap.State, m.snap.Detail = "stopped", ""
	m.mu.Unlock()
	return err
}

// poke asks the loop for a pass soon; it never blocks.
func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// loop runs passes on notifications, on the reconcile interval and, after
// a failed pass, on a back-off. Started by Start, ended by Close.
func (m *Manager) loop(retryFirst bool) {
	defer m.wg.Done()
	m.applyMu.Lock()
	first := m.cfg.ReconcileInterval.D()
	m.applyMu.Unlock()
	var retry time.Duration
	if retryFirst {
		// The first pass failed: retry soon rather than after a period.
		retry = m.hooks.minRetry
		first = retry
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		trigger := triggerPeriodic
		if retry > 0 {
			trigger = triggerRetry
		}
		select {
		case <-m.done:
			return
		case <-timer.C:
		case <-m.kick:
			trigger = triggerEvent
			// A link flap sends dozens of notifications; one pass after
			// the burst sees them all.
			select {
			case <-m.done:
				return
			case <-time.After(m.hooks.debounce):
			}
			select {
			case <-m.kick:
			default:
			}
		}
		m.applyMu.Lock()
		if m.closed {
			m.applyMu.Unlock()
			return
		}
		out := m.passLocked(trigger, false)
		next := m.cfg.ReconcileInterval.D()
		m.applyMu.Unlock()
		if out.err != nil {
			retry = min(max(retry*2, m.hooks.minRetry), m.hooks.maxRetry)
			next = retry
		} else {
			retry = 0
		}
		timer.Reset(next)
	}
}

// watch reads notifications and pokes the loop for relevant ones. Started
// by Start; it ends when Close closes src.
func (m *Manager) watch(src eventSource) {
	defer m.wg.Done()
	for {
		msgs, err := src.Receive()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			if errors.Is(err, errOverrun) {
				m.poke()
				continue
			}
			m.watchLost.Store(true)
			m.log.Error("netlink notifications stopped; drift is now repaired only every reconcile_interval", "err", err)
			m.poke()
			return
		}
		f := m.filter.Load()
		for _, msg := range msgs {
			ev, err := decodeEvent(msg.typ, msg.data)
			if err != nil || f == nil || f.relevant(ev) {
				m.poke()
				break
			}
		}
	}
}

// isPermission reports whether err carries EPERM or EACCES.
func isPermission(err error) bool {
	return err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES))
}
