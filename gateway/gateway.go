// Package gateway is mediaedge's SRTP re-keying gateway. Every call is a
// session with two legs, internal (enterprise endpoints) and cloud (the
// provider's media relays), each with its own keys: the gateway
// authenticates and decrypts SRTP and SRTCP from one leg and re-encrypts
// them for the other, so internal keys never leave the enterprise and each
// leg is re-keyed on its own schedule. Legs never share a master key.
//
// Sessions are created, inspected, re-keyed and deleted over the control
// API (see api.go and docs/gateway.md). The data path is a few event
// loops (workers), one per CPU by default, each owning its sockets and the
// crypto contexts of its sessions; see worker.go.
package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/steer"
)

// Gateway is the SRTP re-keying gateway component. New builds it and
// registers its control API routes, Start binds and starts the workers,
// Close stops them and ends every session. All methods are safe for
// concurrent use.
type Gateway struct {
	// set in New, never changed
	log     *slog.Logger
	console io.Writer
	metrics *metrics
	events  *eventLog
	epoch   time.Time // monotonic base of worker clocks
	granted [2]sync.Once
	// newSteerer loads and attaches the steering program (steer.New);
	// tests stand in a refusal.
	newSteerer func() (*steer.Steerer, error)
	// steerRefusedOnce: steerRefused logs once.
	steerRefusedOnce sync.Once

	cfg      atomic.Pointer[Config]
	draining atomic.Bool // Drain was called: Create refuses new sessions

	// DTLS legs (dtls*.go): the certificate in use (replaced by Reload),
	// the handshakes in progress (bounded by dtls.max_handshakes), and
	// the handshake goroutines, which Close waits for.
	dtlsCert   atomic.Pointer[dtlsCert]
	dtlsActive atomic.Int64
	dtlsWG     sync.WaitGroup

	// mu guards the following.
	mu       sync.Mutex
	state    string // "stopped" (before Start), "running", "closed"
	workers  []*worker
	ports    [2]*portAlloc
	sessions map[string]*session
	rr       int            // next worker, round robin
	steer    *steer.Steerer // nil unless steering runs (steering.go)
	ng       *ngServer      // nil unless gateway.ng.listen or listen_tcp is set
	ngm      *ngMetrics
}

// New returns a Gateway for cfg and registers its control API routes on
// d.Control (when not nil). Nothing is bound until Start. A cfg that
// Validate refuses is refused here too (with config.Problems), except for
// a leg without a port range, which binds any free port.
func New(cfg Config, d component.Deps) (*Gateway, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		log:        d.Logger,
		console:    d.Console,
		events:     newEventLog(),
		epoch:      time.Now(),
		state:      "stopped",
		sessions:   map[string]*session{},
		newSteerer: steer.New,
	}
	if d.Registry != nil {
		m, err := newMetrics(d.Registry)
		if err != nil {
			return nil, fmt.Errorf("gateway: registering metrics: %w", err)
		}
		g.metrics = m
	} else {
		g.metrics = newUnregisteredMetrics()
	}
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	ngm, err := newNGMetrics(reg)
	if err != nil {
		return nil, err
	}
	g.ngm = ngm
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mediaedge_gateway_dtls_handshakes_in_progress",
		Help: "DTLS handshakes of DTLS legs running now (at most gateway.dtls.max_handshakes).",
	}, func() float64 { return float64(g.dtlsActive.Load()) })); err != nil {
		return nil, fmt.Errorf("gateway: registering metrics: %w", err)
	}
	cert, err := loadDTLSCert(&cfg.DTLS)
	if err != nil {
		return nil, err
	}
	g.dtlsCert.Store(cert)
	c := cfg
	g.cfg.Store(&c)
	if d.Control != nil {
		g.routes(d.Control)
	}
	return g, nil
}

// Start opens the workers (and the shared sockets of legs in shared port
// mode) and returns once they run.
func (g *Gateway) Start(ctx context.Context) error {
	cfg := g.cfg.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != "stopped" {
		return fmt.Errorf("gateway: Start called twice")
	}
	n := cfg.Workers
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	g.ports = [2]*portAlloc{newPortAlloc(cfg.Internal.Ports), newPortAlloc(cfg.Cloud.Ports)}
	var workers []*worker
	fail := func(err error) error {
		for _, w := range workers {
			w.shutdown()
		}
		return err
	}
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		w := newWorker(g, i)
		if err := w.sys.open(max(cfg.Batch, 1)); err != nil {
			return fail(err)
		}
		workers = append(workers, w)
		for id := legInternal; id <= legCloud; id++ {
			lc := legConfig(cfg, id)
			if lc.PortMode != PortsShared {
				continue
			}
			ss, err := g.openShared(lc, id)
			if err != nil {
				return fail(err)
			}
			w.shared[id] = ss
			for _, so := range []*sock{ss.rtp, ss.rtcp} {
				if err := w.sys.register(so); err != nil {
					return fail(err)
				}
			}
		}
	}
	st, err := g.startSteering(cfg)
	if err != nil {
		return fail(err)
	}
	if st != nil {
		if err := g.attachSteering(st, workers, cfg); err != nil {
			_ = st.Close()
			if cfg.Steering == SteeringOn {
				return fail(fmt.Errorf("%w: %w", errSteeringOn, err))
			}
			g.log.Warn("steering unavailable; dedicated sockets are read one by one", "err", err)
			st = nil
		}
	}
	g.steer = st
	fail = func(err error) error {
		for _, w := range workers {
			w.shutdown()
		}
		if st != nil {
			_ = st.Close()
			g.steer = nil
		}
		return err
	}
	if cfg.NG.Listen != "" || cfg.NG.ListenTCP != "" {
		srv, err := newNGServer(g, &cfg.NG, g.ngm)
		if err != nil {
			return fail(err)
		}
		g.ng = srv
	}
	stats := make([]*workerStats, len(workers))
	for i, w := range workers {
		stats[i] = &w.stats
		go w.run()
	}
	g.workers = workers
	g.state = "running"
	if g.ng != nil {
		g.ng.start()
	}
	g.metrics.setWorkers(stats, [2]string{string(cfg.Internal.PortMode), string(cfg.Cloud.PortMode)})
	g.metrics.steering.Store(st != nil)
	g.log.Info("gateway started", "workers", len(workers), "steering", st != nil,
		"internal", fmt.Sprintf("%s ports %s (%s)", cfg.Internal.Bind, cfg.Internal.Ports, cfg.Internal.PortMode),
		"cloud", fmt.Sprintf("%s ports %s (%s, mark %s)", cfg.Cloud.Bind, cfg.Cloud.Ports, cfg.Cloud.PortMode, cfg.Cloud.Mark),
		"max_sessions", cfg.MaxSessions)
	return nil
}

// openShared binds a worker's shared RTP and RTCP sockets on a leg: an
// even port and the next one.
func (g *Gateway) openShared(lc *LegConfig, id legID) (sharedSocks, error) {
	rtp, rtcp, err := g.bindPairLowest(lc, id)
	if err != nil {
		return sharedSocks{}, err
	}
	rtp.dm, rtcp.dm = newDemux(), newDemux()
	return sharedSocks{rtp: rtp, rtcp: rtcp}, nil
}

// bindPairLowest is bindPair from the bottom of the range.
func (g *Gateway) bindPairLowest(lc *LegConfig, id legID) (rtp, rtcp *sock, err error) {
	if lc.Ports.Min == 0 {
		return g.bindPair(lc, id)
	}
	pa := g.ports[id]
	for {
		port, ok := pa.reserveLowest()
		if !ok {
			return nil, nil, &PortError{Leg: id.String(), Err: fmt.Errorf("no free port pair in %s: %w", lc.Ports, ErrLimit)}
		}
		rtp, err := g.bindAt(lc, id, port)
		if err == nil {
			rtp.port, rtp.pair = port, true
			rtcp, err = g.bindAt(lc, id, port+1)
			if err == nil {
				rtcp.rtcpOnly = true
				g.logGranted(rtp, id)
				return rtp, rtcp, nil
			}
			closeFD(rtp.fd)
		}
		if !isAddrInUse(err) {
			pa.release(port)
			pa.release(port + 1)
			return nil, nil, &PortError{Leg: id.String(), Err: err}
		}
		// Held by another program: keep it marked so the next try moves
		// on, and say so.
		g.log.Warn("shared port in use by another program; trying the next pair", "leg", id.String(), "port", port)
	}
}

// bindPair binds an RTP socket on an even port and an RTCP socket on the
// next one (RFC 3550 section 11), for peers that ignore a=rtcp.
func (g *Gateway) bindPair(lc *LegConfig, id legID) (rtp, rtcp *sock, err error) {
	for tries := 0; tries < 64; tries++ {
		rtp, err := g.bindPort(lc, id, true)
		if err != nil {
			return nil, nil, err
		}
		port := rtp.local.Port() + 1
		if lc.Ports.Min == 0 {
			port = 0 // tests: ephemeral ports, no adjacency
		}
		rtcp, err := g.bindAt(lc, id, port)
		if err != nil {
			g.closeSock(rtp)
			if isAddrInUse(err) {
				continue
			}
			return nil, nil, &PortError{Leg: id.String(), Err: err}
		}
		rtcp.rtcpOnly = true
		g.logGranted(rtp, id)
		return rtp, rtcp, nil
	}
	return nil, nil, &PortError{Leg: id.String(), Err: fmt.Errorf("no free port pair in %s: %w", lc.Ports, ErrLimit)}
}

// bindPort binds a socket for leg id on a port of its range (with pair,
// an even port whose successor is reserved too). A range of 0-0 (tests)
// binds an ephemeral port.
func (g *Gateway) bindPort(lc *LegConfig, id legID, pair bool) (*sock, error) {
	if lc.Ports.Min == 0 {
		so, err := g.bindAt(lc, id, 0)
		if err != nil {
			return nil, &PortError{Leg: id.String(), Err: err}
		}
		return so, nil
	}
	pa := g.ports[id]
	for tries := 0; tries < lc.Ports.Len(); tries++ {
		port, ok := pa.reserve(pair)
		if !ok {
			break
		}
		so, err := g.bindAt(lc, id, port)
		if err != nil {
			pa.release(port)
			if pair {
				pa.release(port + 1)
			}
			if isAddrInUse(err) {
				continue // another program holds it
			}
			return nil, &PortError{Leg: id.String(), Err: err}
		}
		so.port, so.pair = port, pair
		g.logGranted(so, id)
		return so, nil
	}
	return nil, &PortError{Leg: id.String(), Err: fmt.Errorf("no free port in %s: %w", lc.Ports, ErrLimit)}
}

// bindAt binds a socket for leg id on port (0: ephemeral).
func (g *Gateway) bindAt(lc *LegConfig, id legID, port uint16) (*sock, error) {
	addr, err := lc.bindAddr()
	if err != nil {
		return nil, err
	}
	so, err := openSock(addr, port, lc)
	if err != nil {
		return nil, err
	}
	so.leg = id
	return so, nil
}

// logGranted logs the buffer sizes the kernel granted, once per leg.
func (g *Gateway) logGranted(so *sock, id legID) {
	g.granted[id].Do(func() {
		gr, err := grantedBuffers(so)
		if err != nil {
			return
		}
		lc := legConfig(g.cfg.Load(), id)
		g.log.Info("socket buffers", "leg", id.String(), "recv_wanted", int64(lc.RecvBuffer),
			"recv_granted", gr.RecvBuffer, "send_wanted", int64(lc.SendBuffer), "send_granted", gr.SendBuffer)
	})
}

// closeSock closes so and gives its port back; the RTP socket of a pair
// gives back the RTCP port too. Safe for concurrent use.
func (g *Gateway) closeSock(so *sock) {
	if so.steerBy != nil {
		// Not unregistered by its worker (never, today): the entry must
		// not outlive the socket, or the port's next owner would lose
		// its datagrams to the worker.
		_ = so.steerBy.Remove(so.local, so.v6 && so.local.Addr().IsUnspecified())
		so.steerBy = nil
	}
	closeFD(so.fd)
	so.fd = -1
	if so.port != 0 && g.ports[so.leg] != nil {
		g.ports[so.leg].release(so.port)
		if so.pair {
			g.ports[so.leg].release(so.port + 1)
		}
	}
}

// Reload applies cfg to the running gateway without dropping sessions.
// Port ranges, bind addresses, limits, timeouts and re-key policies apply
// at once (addresses and ranges to new sessions); the mark and buffer
// sizes are applied to existing sockets too. The number of workers and
// the port mode need a restart. An invalid cfg is refused as in New and
// changes nothing.
func (g *Gateway) Reload(ctx context.Context, cfg Config) error {
	if err := cfg.validate(false); err != nil {
		return err
	}
	old := g.cfg.Load()
	if cfg.Workers != old.Workers {
		g.log.Warn("reload: gateway.workers changes need a restart", "running", old.Workers, "configured", cfg.Workers)
		cfg.Workers = old.Workers
	}
	for id := legInternal; id <= legCloud; id++ {
		o, n := legConfig(old, id), legConfig(&cfg, id)
		if n.PortMode != o.PortMode || (o.PortMode == PortsShared && (n.Bind != o.Bind || n.Ports != o.Ports)) {
			g.log.Warn("reload: port mode and shared ports need a restart", "leg", id.String())
			n.PortMode, n.Bind, n.Ports = o.PortMode, o.Bind, o.Ports
		}
	}
	if cfg.Steering != old.Steering {
		g.log.Warn("reload: gateway.steering changes need a restart", "running", old.Steering, "configured", cfg.Steering)
		cfg.Steering = old.Steering
	}
	if cfg.NG.Listen != old.NG.Listen {
		g.log.Warn("reload: gateway.ng.listen changes need a restart", "running", old.NG.Listen, "configured", cfg.NG.Listen)
		cfg.NG.Listen = old.NG.Listen
	}
	if cfg.NG.ListenTCP != old.NG.ListenTCP {
		g.log.Warn("reload: gateway.ng.listen_tcp changes need a restart", "running", old.NG.ListenTCP, "configured", cfg.NG.ListenTCP)
		cfg.NG.ListenTCP = old.NG.ListenTCP
	}
	if err := g.reloadDTLSCert(old, &cfg); err != nil {
		return err
	}
	c := cfg
	g.cfg.Store(&c)
	g.mu.Lock()
	if g.ng != nil {
		g.ng.reload(&c.NG)
	}
	workers := g.workers
	if g.ports[0] != nil {
		g.ports[legInternal].setRange(cfg.Internal.Ports)
		g.ports[legCloud].setRange(cfg.Cloud.Ports)
	}
	g.mu.Unlock()
	for id := legInternal; id <= legCloud; id++ {
		o, n := legConfig(old, id), legConfig(&cfg, id)
		if o.Mark == n.Mark && o.RecvBuffer == n.RecvBuffer && o.SendBuffer == n.SendBuffer {
			continue
		}
		var failed int
		for _, w := range workers {
			if err := w.do(ctx, func() { failed += w.applySockOpts(id, n, o.Mark != 0) }); err != nil {
				return fmt.Errorf("gateway: applying socket options: %w", err)
			}
		}
		if failed > 0 {
			return fmt.Errorf("gateway: %s leg: socket options refused on %d sockets (SO_MARK needs CAP_NET_ADMIN)", id, failed)
		}
		g.log.Info("socket options applied to existing sockets", "leg", id.String(), "mark", n.Mark.String())
	}
	return nil
}

// Status reports the gateway's state for GET /v1/status. Safe for
// concurrent use.
func (g *Gateway) Status() Status {
	cfg := g.cfg.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Status{Sessions: len(g.sessions), MaxSessions: cfg.MaxSessions, Workers: len(g.workers), Draining: g.draining.Load(),
		PortModes: map[string]PortMode{"internal": cfg.Internal.PortMode, "cloud": cfg.Cloud.PortMode},
		Steering:  g.steer != nil}
	switch g.state {
	case "running":
		st.State = "running"
	case "closed":
		st.State = "stopped"
	default:
		st.State = "starting"
	}
	return st
}

// Status is the gateway's part of GET /v1/status: a snapshot the caller
// owns.
type Status struct {
	component.Status
	Sessions    int                 `json:"sessions"`
	MaxSessions int                 `json:"max_sessions"`
	Workers     int                 `json:"workers"`
	PortModes   map[string]PortMode `json:"port_modes"`
	// Steering: datagrams to dedicated ports are steered to one socket
	// per worker (gateway.steering).
	Steering bool `json:"steering"`
	Draining bool `json:"draining,omitempty"`
}

// Close stops the workers, ending every session (keys wiped), and waits
// for them. It is idempotent.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.state == "closed" {
		g.mu.Unlock()
		return nil
	}
	workers := g.workers
	srv := g.ng
	g.ng = nil
	g.state = "closed"
	g.mu.Unlock()
	if srv != nil {
		srv.close()
	}
	for _, w := range workers {
		w.stop()
	}
	for _, w := range workers {
		<-w.done
	}
	// The workers stopped every DTLS transport of their sessions.
	g.dtlsWG.Wait()
	g.mu.Lock()
	g.workers = nil
	st := g.steer
	g.steer = nil
	g.mu.Unlock()
	if st != nil {
		// The workers removed their entries and targets; this detaches
		// the program.
		if err := st.Close(); err != nil {
			g.log.Warn("detaching the steering program failed", "err", err)
		}
		g.metrics.steering.Store(false)
	}
	return nil
}

// sessionEnded is called by a worker once it has ended s.
func (g *Gateway) sessionEnded(s *session, why string) {
	g.mu.Lock()
	if g.sessions[s.id] == s {
		delete(g.sessions, s.id)
	}
	n := len(g.sessions)
	g.mu.Unlock()
	g.metrics.sessions.Set(float64(n))
	g.metrics.ended.WithLabelValues(why).Inc()
	g.events.scrub(s.id)
	g.events.add(Event{Type: EventEnded, Session: s.id, Reason: why}, nil)
	if why != EndShutdown {
		g.log.Info("session ended", "session", s.id, "reason", why)
	}
}

// legConfig returns leg id's section of cfg.
func legConfig(cfg *Config, id legID) *LegConfig {
	if id == legInternal {
		return &cfg.Internal
	}
	return &cfg.Cloud
}

// parseRemote parses an optional "ip:port".
func parseRemote(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not ip:port", clip(s))
	}
	if ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q is not a unicast address with a port", clip(s))
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
