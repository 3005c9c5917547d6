// Package daemon is mediaedge's supervisor: it builds the components from a
// Config, starts them in order (control API, metrics, policy, gateway,
// relay), applies reloads, and stops them in reverse order.
//
// Signal handling and systemd notification belong to cmd/mediaedge, which
// calls Start, Reload and Close.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/internal/buildinfo"
	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/logging"
	"github.com/mediaedge/mediaedge/internal/metrics"
	"github.com/mediaedge/mediaedge/policy"
	"github.com/mediaedge/mediaedge/relay"
)

var defaultSocket = control.DefaultSocket

// Options are what the caller provides besides the configuration.
type Options struct {
	// Logger is the root logger; LevelVar is its level, changed on reload.
	Logger   *slog.Logger
	LevelVar *slog.LevelVar
	// Console receives one-time operator messages (generated credentials).
	Console io.Writer
	// OnDrain, when set, is called once when a drain begins (cmd/mediaedge
	// tells systemd: STATUS=draining).
	OnDrain func(DrainStatus)
}

// Daemon runs the components of one configuration. It is created by New,
// started once by Start, reloaded any number of times, and stopped by
// Close. Reload and Close may be called from any goroutine but not
// concurrently with each other (the caller's signal loop serialises them).
type Daemon struct {
	// set in New, never changed
	log     *slog.Logger
	lv      *slog.LevelVar
	reg     *prometheus.Registry
	ctl     *control.Server
	metrics *metrics.Server
	relay   *relay.Server
	gw      *gateway.Gateway
	pol     *policy.Manager
	units   []unit
	started time.Time
	onDrain func(DrainStatus)

	// drain: drained is closed when a drain is done; stopDrain stops the
	// drain goroutine (Close); drainKick wakes it when the deadline moves.
	drained   chan struct{}
	stopDrain chan struct{}
	drainKick chan struct{}
	drainWG   sync.WaitGroup

	mu          sync.Mutex
	cfg         Config
	metricsAddr net.Addr
	running     []unit // started units, in start order
	lastReload  time.Time
	reloadErr   string
	closed      bool
	// drainSince is zero until Drain; drainReason is set when it is done.
	drainSince    time.Time
	drainDeadline time.Time
	drainReason   string
}

// unit is one supervised component.
type unit struct {
	name    string
	enabled func(Config) bool
	start   func(context.Context) error
	reload  func(context.Context, Config) error
	status  func() component.Report
	close   func() error
	// health reports a running component that can no longer serve (nil:
	// the component has no such check).
	health func() error
}

// New builds every component of cfg without starting any.
func New(cfg Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LevelVar == nil {
		opts.LevelVar = new(slog.LevelVar)
	}
	d := &Daemon{
		log:     opts.Logger,
		lv:      opts.LevelVar,
		reg:     metrics.NewRegistry(),
		cfg:     cfg,
		started: time.Now(),
		onDrain: opts.OnDrain,

		drained:   make(chan struct{}),
		stopDrain: make(chan struct{}),
		drainKick: make(chan struct{}, 1),
	}
	d.ctl = control.NewServer(d.log.With("component", "control"), cfg.Control.TokenFile.Bytes())
	d.ctl.SetMaxLongPolls(cfg.Control.MaxLongPolls)
	if err := d.ctl.RegisterMetrics(d.reg); err != nil {
		return nil, fmt.Errorf("control: registering metrics: %w", err)
	}
	d.metrics = metrics.NewServer(d.log.With("component", "metrics"), d.reg)
	deps := func(name string) component.Deps {
		return component.Deps{
			Logger:   d.log.With("component", name),
			Registry: d.reg,
			Control:  d.ctl,
			Console:  opts.Console,
		}
	}
	var err error
	if d.pol, err = policy.New(cfg.Policy, deps("policy")); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if d.gw, err = gateway.New(cfg.Gateway, deps("gateway")); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if d.relay, err = relay.New(cfg.Relay, deps("relay")); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	d.units = []unit{
		{
			name:    "policy",
			enabled: func(c Config) bool { return c.Policy.Enabled },
			start:   d.pol.Start,
			reload:  func(ctx context.Context, c Config) error { return d.pol.Reload(ctx, c.Policy) },
			status:  func() component.Report { return d.pol.Status() },
			close:   d.pol.Close,
		},
		{
			name:    "gateway",
			enabled: func(c Config) bool { return c.Gateway.Enabled },
			start:   d.gw.Start,
			reload:  func(ctx context.Context, c Config) error { return d.gw.Reload(ctx, c.Gateway) },
			status:  func() component.Report { return d.gw.Status() },
			close:   d.gw.Close,
		},
		{
			name:    "relay",
			enabled: func(c Config) bool { return c.Relay.Enabled },
			start:   d.relay.Start,
			reload:  func(ctx context.Context, c Config) error { return d.relay.Reload(ctx, c.Relay) },
			status:  func() component.Report { return d.relay.Status() },
			close:   d.relay.Close,
			health:  d.relay.Health,
		},
	}
	d.metrics.SetCheck(d.health)
	d.ctl.HandleFunc("GET /v1/status", d.serveStatus)
	d.ctl.HandleFunc("GET /v1/config", d.serveConfig)
	d.ctl.HandleFunc("POST /v1/drain", d.serveDrain)
	return d, nil
}

// TrialUser returns the relay's generated user and password (relay.auth.
// generate_user), or empty strings, for the operator's start-up banner.
func (d *Daemon) TrialUser() (user, password string) { return d.relay.TrialUser() }

// Registry returns the daemon's metrics registry.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// MetricsAddr returns the bound metrics address, or nil.
func (d *Daemon) MetricsAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.metricsAddr
}

// Start binds the control API and metrics, then starts each enabled
// component in order. On failure it stops what it started and returns the
// error; the Daemon must then be closed.
func (d *Daemon) Start(ctx context.Context) error {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	sock := cfg.Control.SocketPath()
	if err := d.ctl.ListenUnix(sock, 0o660); err != nil {
		return err
	}
	d.log.Info("control API listening", "socket", sock)
	if cfg.Control.TCPListen != "" {
		addr, err := d.ctl.ListenTCP(cfg.Control.TCPListen)
		if err != nil {
			return err
		}
		d.log.Info("control API listening", "addr", addr.String(), "auth", "bearer")
	}
	if cfg.Metrics.Listen != "" {
		addr, err := d.metrics.Listen(cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.metricsAddr = addr
		d.mu.Unlock()
		d.log.Info("metrics listening", "addr", addr.String())
	}
	for _, u := range d.units {
		if !u.enabled(cfg) {
			d.log.Info("component disabled", "component", u.name)
			continue
		}
		t0 := time.Now()
		if err := u.start(ctx); err != nil {
			return fmt.Errorf("starting %s: %w", u.name, err)
		}
		d.mu.Lock()
		d.running = append(d.running, u)
		d.mu.Unlock()
		d.log.Info("component started", "component", u.name, "took", time.Since(t0).Round(time.Millisecond).String())
	}
	d.metrics.SetReady(true, "")
	return nil
}

// Reload applies cfg to every running component. Settings that cannot change
// without a restart (listen addresses of the control API and metrics,
// enabling or disabling a component) are logged and kept as they are. It
// returns the errors of the components that refused the new configuration;
// the others have applied it.
func (d *Daemon) Reload(ctx context.Context, cfg Config) error {
	d.mu.Lock()
	old := d.cfg
	running := append([]unit(nil), d.running...)
	d.mu.Unlock()

	if lvl, err := logging.ParseLevel(cfg.Log.Level); err == nil {
		d.lv.Set(lvl)
	}
	d.ctl.SetMaxLongPolls(cfg.Control.MaxLongPolls)
	if cfg.Log.Format != old.Log.Format {
		d.log.Warn("reload: log format changes need a restart", "running", old.Log.Format, "configured", cfg.Log.Format)
	}
	if cfg.Metrics != old.Metrics {
		d.log.Warn("reload: metrics address changes need a restart", "running", old.Metrics.Listen, "configured", cfg.Metrics.Listen)
	}
	if cfg.Control.Socket != old.Control.Socket || cfg.Control.TCPListen != old.Control.TCPListen {
		d.log.Warn("reload: control API address changes need a restart")
	}
	for _, u := range d.units {
		if u.enabled(cfg) != u.enabled(old) {
			d.log.Warn("reload: enabling or disabling a component needs a restart", "component", u.name, "configured", u.enabled(cfg))
		}
	}
	var errs []error
	for _, u := range running {
		if err := u.reload(ctx, cfg); err != nil {
			d.log.Error("reload refused by component; it keeps its previous configuration", "component", u.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", u.name, err))
		}
	}
	err := errors.Join(errs...)
	d.mu.Lock()
	d.cfg = cfg
	d.lastReload = time.Now()
	d.reloadErr = ""
	if err != nil {
		d.reloadErr = err.Error()
	}
	d.mu.Unlock()
	return err
}

// health returns the first running component's health error, for
// /readyz.
func (d *Daemon) health() error {
	d.mu.Lock()
	running := d.running
	d.mu.Unlock()
	for _, u := range running {
		if u.health == nil {
			continue
		}
		if err := u.health(); err != nil {
			return fmt.Errorf("%s: %w", u.name, err)
		}
	}
	return nil
}

// RecordReloadFailure records a reload that was refused before reaching the
// components (an invalid file), for the status endpoint.
func (d *Daemon) RecordReloadFailure(err error) {
	d.mu.Lock()
	d.lastReload = time.Now()
	d.reloadErr = err.Error()
	d.mu.Unlock()
}

// Config returns the configuration in effect.
func (d *Daemon) Config() Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Close stops the components in reverse order, then metrics and the control
// API, within ctx's deadline for the HTTP servers. It is idempotent.
func (d *Daemon) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	running := d.running
	d.running = nil
	d.mu.Unlock()
	close(d.stopDrain)
	d.drainWG.Wait()
	d.metrics.SetReady(false, "stopping")
	var errs []error
	for i := len(running) - 1; i >= 0; i-- {
		u := running[i]
		if err := u.close(); err != nil {
			d.log.Error("component stopped with an error", "component", u.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", u.name, err))
		} else {
			d.log.Info("component stopped", "component", u.name)
		}
	}
	if err := d.metrics.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := d.ctl.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// StatusReport is the body of GET /v1/status.
type StatusReport struct {
	Version       string     `json:"version"`
	Commit        string     `json:"commit,omitempty"`
	GoVersion     string     `json:"go_version"`
	StartedAt     time.Time  `json:"started_at"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	ConfigFile    string     `json:"config_file"`
	LastReload    *time.Time `json:"last_reload,omitempty"`
	ReloadError   string     `json:"reload_error,omitempty"`
	// Components maps each component's name to its component.Report
	// (relay.Status, gateway.Status, policy.Status, or a bare
	// component.Status when it is not running); decoded, a JSON object.
	Components map[string]any `json:"components"`
	// Drain is set once a drain has begun.
	Drain *DrainStatus `json:"drain,omitempty"`
}

// Status returns the daemon's status report.
func (d *Daemon) Status() StatusReport {
	bi := buildinfo.Get()
	d.mu.Lock()
	cfg := d.cfg
	running := map[string]bool{}
	for _, u := range d.running {
		running[u.name] = true
	}
	r := StatusReport{
		Version:       bi.Version,
		Commit:        bi.Commit,
		GoVersion:     bi.GoVersion,
		StartedAt:     d.started,
		UptimeSeconds: time.Since(d.started).Seconds(),
		ConfigFile:    cfg.Path,
		ReloadError:   d.reloadErr,
		Components:    map[string]any{},
	}
	if !d.lastReload.IsZero() {
		t := d.lastReload
		r.LastReload = &t
	}
	d.mu.Unlock()
	if r.ConfigFile == "" {
		r.ConfigFile = "(embedded default)"
	}
	if ds := d.drainStatus(); !ds.Since.IsZero() {
		r.Drain = &ds
	}
	for _, u := range d.units {
		switch {
		case running[u.name]:
			r.Components[u.name] = u.status()
		case !u.enabled(cfg):
			r.Components[u.name] = component.Status{State: "disabled"}
		default:
			r.Components[u.name] = component.Status{State: "stopped"}
		}
	}
	return r
}

func (d *Daemon) serveStatus(w http.ResponseWriter, _ *http.Request) {
	control.WriteJSON(w, http.StatusOK, d.Status())
}

// serveConfig returns the configuration in effect: JSON like the rest of
// the API, or YAML (the file's own syntax) for "Accept: application/yaml"
// or "?format=yaml". The JSON keys are the YAML keys. Secret files appear
// as their paths only.
func (d *Daemon) serveConfig(w http.ResponseWriter, r *http.Request) {
	out, err := yaml.Marshal(d.Config())
	if err != nil {
		control.WriteError(w, http.StatusInternalServerError, control.CodeInternal, "encoding the configuration: "+err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if wantsYAML(r) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(out)
		return
	}
	// Through YAML so that the keys are the file's (relay.listeners, not
	// Relay.Listeners) and every custom type prints as in the file.
	var tree any
	if err := yaml.Unmarshal(out, &tree); err != nil {
		control.WriteError(w, http.StatusInternalServerError, control.CodeInternal, "encoding the configuration: "+err.Error())
		return
	}
	control.WriteJSON(w, http.StatusOK, tree)
}

// wantsYAML reports whether the request asks for YAML.
func wantsYAML(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "yaml":
		return true
	case "json":
		return false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.TrimSpace(mt) {
		case "application/yaml", "application/x-yaml", "text/yaml":
			return true
		}
	}
	return false
}

// CheckFile loads path (or the embedded default) and returns every problem
// found, for `mediaedge config check`.
func CheckFile(path string, opts config.Options) error {
	_, err := Load(path, opts)
	return err
}
