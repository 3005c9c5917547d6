// Package relay is mediaedge's TURN relay (RFC 8656, with RFC 6062 TCP
// allocations and RFC 6156 IPv6) built on pion/turn/v5.
//
// pion handles the protocol: authentication challenges, allocations,
// permissions, channels, refreshes. The relay plugs into pion's seams:
//
//   - its UDP listener sockets are read by workers, one per SO_REUSEPORT
//     shard, each waiting on one epoll set that holds its listener shards
//     and the relay sockets of its allocations. A worker relays
//     ChannelData of known channels both ways in batches (recvmmsg,
//     sendmmsg) and hands pion only STUN messages, through the shard's
//     PacketConn (udpShard);
//   - its relay address generator binds relay sockets from a port pool and
//     registers them with the worker of the shard the Allocate came in on;
//   - its AuthHandler, QuotaHandler, PermissionHandler (the peer policy) and
//     EventHandler (which mirrors channels and permissions into lock-free
//     snapshots for the data path, and writes the accounting line).
//
// A Server is built by New, started once by Start, reloaded any number of
// times and stopped by Close; Reload, Status and Close may be called from
// any goroutine.
package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
	"github.com/mediaedge/mediaedge/relay/fastpath"
)

// Server is the relay component. The daemon owns it: New builds it, Start
// binds and serves once, Reload and Status may be called from any
// goroutine, and Close ends every allocation and waits for the relay's
// goroutines; it is idempotent. pion's callbacks (relay address generator,
// auth, quota, permission and event handlers) are unexported values the
// Server hands to pion, not methods of its API.
type Server struct {
	// set in New, never changed
	log     *slog.Logger
	stats   dataStats
	metrics *metrics
	auth    *authenticator
	clock0  time.Time
	gso     *udpbatch.GSO // the workers' UDP GSO switch (runs of datagrams to one destination)
	// acceptLog bounds the log lines of temporary accept errors.
	acceptLog *rateGate
	// tcpConns counts open client TCP/TLS connections for the caps.
	tcpConns connLimiter
	// challenges rate-limits 401 answers per source.
	challenges challengeLimiter

	// policy and limits are read lock-free by the data path and handlers;
	// Reload swaps them.
	policy   atomic.Pointer[peerPolicy]
	limits   atomic.Pointer[LimitsConfig]
	stopping atomic.Bool   // Close has begun: allocations end with "shutdown"
	draining atomic.Bool   // Drain was called: new allocations are refused
	coalesce atomic.Int64  // the workers' coalesce window in nanoseconds
	nextW    atomic.Uint32 // round robin of TCP/TLS clients' UDP allocations over workers

	// set in New, never changed: RFC 6062 Connect (a func field so that
	// tests can stand in for a peer that does not answer)
	connectTimeout time.Duration
	dial           func(ctx context.Context, network string, local, peer netip.AddrPort) (net.Conn, error)
	dials          sync.WaitGroup // Connects being dialled in the background

	// set in Start, never changed afterwards
	cfg           Config // the configuration the relay started with
	generated     string // the trial user's password
	generatedUser string // and its name
	turn          *turn.Server
	groups        []*udpGroup
	tcpLns        []*tcpListener
	workers       []*worker
	slots         *slotTable
	udpPorts      [2]*portPool // by family: 0 IPv4, 1 IPv6
	tcpPorts      [2]*portPool
	bind          [2]netip.Addr
	adv           [2]netip.Addr
	sock          sockOpts
	fast          *fastpath.Forwarder // nil unless fast_path is auto or on and it started
	// fastRetry are the allocations with channels the fast path refused
	// for want of a route, offered again after route changes.
	fastRetry fastRetry
	// fastSnap and foldAllocs are foldFast's, kept from one fold to the
	// next (it runs on the housekeeping goroutine only)
	fastSnap   fastpath.Snapshot
	foldAllocs []*alloc
	fastGen    atomic.Uint64 // numbers fast-path entries as they are added
	// attachFast loads and attaches the fast path (attachFastPath; tests
	// stand in a refusal). Set before Start, never changed.
	attachFast func(addrs []netip.Addr) (*fastpath.Forwarder, int, error)
	wg         sync.WaitGroup
	done       chan struct{}

	mu     sync.Mutex
	state  string
	allocs map[uint64]*alloc
	// byRelayTCP finds TCP allocations by advertised relayed address
	// (UDP ones are in slots, by port).
	byRelayTCP map[netip.AddrPort]*alloc
	// byFive finds allocations of TCP/TLS clients by 5-tuple (those of
	// UDP clients are in their listener's client table).
	byFive  map[fiveKey]*alloc
	users   map[string]*userState
	nextID  uint64
	pending int // allocations being created (between quota and socket)
	closed  bool
	failure error // why the relay can no longer serve (see Health)
}

// New builds a Server for cfg without binding anything. It registers the
// metrics and the control route GET /v1/relay/allocations. A cfg that
// Validate refuses is refused here too, with config.Problems.
func New(cfg Config, d component.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:        log,
		clock0:     time.Now(),
		gso:        udpbatch.NewGSO(),
		cfg:        cfg,
		state:      "starting",
		allocs:     map[uint64]*alloc{},
		byRelayTCP: map[netip.AddrPort]*alloc{},
		byFive:     map[fiveKey]*alloc{},
		users:      map[string]*userState{},
		done:       make(chan struct{}),

		connectTimeout: connectTimeout,
		acceptLog:      newRateGate(5, time.Second),
	}
	s.dial = s.dialPeer
	if !cfg.Enabled {
		s.state = "disabled"
		return s, nil
	}
	var err error
	if d.Registry != nil {
		if s.metrics, err = newMetrics(d.Registry, &s.stats); err != nil {
			return nil, fmt.Errorf("relay: registering metrics: %w", err)
		}
	} else {
		s.metrics, _ = newMetrics(noRegistry{}, &s.stats)
	}
	// Series that exist from the start read 0 rather than being absent
	// until the first allocation (an absent series breaks rate() and
	// alerts on "allocations == 0").
	for _, l := range cfg.Listeners {
		for _, proto := range []string{"udp", "tcp"} {
			s.metrics.active.WithLabelValues(string(l.Transport), proto)
			s.metrics.created.WithLabelValues(string(l.Transport), proto)
		}
	}
	if cfg.Auth.GenerateUser != "" {
		if s.generated, err = generatePassword(); err != nil {
			return nil, err
		}
		s.generatedUser = cfg.Auth.GenerateUser
	}
	creds, err := cfg.loadCredentials(s.generated)
	if err != nil {
		return nil, err
	}
	s.auth = newAuthenticator(log, s.metrics, creds)
	lim := cfg.Limits
	s.limits.Store(&lim)
	s.coalesce.Store(int64(cfg.Coalesce.D()))
	if d.Control != nil {
		d.Control.HandleFunc("GET /v1/relay/allocations", s.serveAllocations)
		s.opsRoutes(d.Control)
	}
	return s, nil
}

// nanotime is the relay's monotonic clock for token buckets.
func (s *Server) nanotime() int64 { return int64(time.Since(s.clock0)) }

// Start binds the listeners, starts pion and the workers, and prints the
// trial user's credentials once. On failure it releases what it bound.
func (s *Server) Start(ctx context.Context) error {
	if !s.cfg.Enabled {
		return nil
	}
	if err := s.start(ctx); err != nil {
		s.closeAll()
		// closeAll ran: a later Close must not run it again (it would
		// close s.done twice).
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.state = "running"
	s.mu.Unlock()
	return nil
}

// TrialUser returns the user generated at start-up (auth.generate_user)
// and its password, or empty strings. The caller shows them to the
// operator once (mediaedge run's start-up banner); they never go to a log.
func (s *Server) TrialUser() (user, password string) {
	if s.generated == "" {
		return "", ""
	}
	return s.generatedUser, s.generated
}

// Status reports the relay's state, listeners and counts for GET
// /v1/status. Safe for concurrent use.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Status: component.Status{State: s.state}, Allocations: len(s.allocs), Draining: s.draining.Load()}
	if s.state == "disabled" {
		return st
	}
	if s.failure != nil {
		st.State, st.Detail = "degraded", s.failure.Error()
	}
	for _, g := range s.groups {
		st.Listeners = append(st.Listeners, fmt.Sprintf("udp %s (%d shards, %s)", g.addr, len(g.shards), s.ioMode()))
	}
	for _, l := range s.tcpLns {
		st.Listeners = append(st.Listeners, l.transport+" "+l.addr.String())
	}
	for f := 0; f < 2; f++ {
		if s.udpPorts[f] != nil {
			st.RelayAddresses = append(st.RelayAddresses, fmt.Sprintf("%s (bound %s, ports %s)", s.adv[f], s.bind[f], s.cfg.Ports))
		}
	}
	st.Users = len(s.users)
	return st
}

// ioMode names how the data path sends: sendmmsg, with UDP GSO or not.
func (s *Server) ioMode() string {
	if s.gso.Enabled() {
		return "gso"
	}
	return "mmsg"
}

// Status is the relay's part of GET /v1/status: a snapshot the caller
// owns.
type Status struct {
	component.Status
	Listeners      []string `json:"listeners,omitempty"`
	RelayAddresses []string `json:"relay_addresses,omitempty"`
	Allocations    int      `json:"allocations"`
	Users          int      `json:"users_with_allocations"`
	Draining       bool     `json:"draining,omitempty"`
}

// Close stops the relay: pion and the listeners first (ending every
// allocation, each with its accounting line), then the workers. It is
// idempotent and bounded.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed || s.state == "disabled" {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.state = "stopped"
	s.mu.Unlock()
	return s.closeAll()
}

// gsoDisabled reports that the workers' GSO switch turned off (err: a
// udpbatch.GSODisabledError naming the kernel's refusal), once per run.
func (s *Server) gsoDisabled(err error) {
	s.metrics.ioMode.WithLabelValues("gso").Set(0)
	s.metrics.ioMode.WithLabelValues("mmsg").Set(1)
	s.log.Warn("UDP GSO refused by the kernel; sending one datagram per message from now on", "err", err)
}

// closeAll releases everything Start may have bound.
func (s *Server) closeAll() error {
	s.stopping.Store(true)
	var err error
	if s.turn != nil {
		// pion closes the listeners; its read loops then close every
		// allocation, which closes the relay sockets.
		err = s.turn.Close()
	} else {
		for _, g := range s.groups {
			g.close()
		}
		for _, l := range s.tcpLns {
			l.Close()
		}
	}
	for _, l := range s.tcpLns {
		// pion closes the listener but not the connections it accepted.
		l.closeConns()
	}
	// Wait (bounded) for pion's read loops to close the allocations, then
	// close any left (a loop that never started).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.allocs)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	left := make([]*alloc, 0, len(s.allocs))
	for _, a := range s.allocs {
		left = append(left, a)
	}
	s.mu.Unlock()
	for _, a := range left {
		a.setEndReason("shutdown")
		a.close()
	}
	// Every allocation has ended, which cancelled its background dials.
	s.dials.Wait()
	close(s.done)
	for _, w := range s.workers {
		w.Close()
	}
	s.wg.Wait()
	if s.fast != nil {
		// Every allocation has removed its entries; detach and free.
		if ferr := s.fast.Close(); ferr != nil {
			s.log.Warn("closing the in-kernel fast path failed", "err", ferr)
		}
	}
	if s.turn != nil {
		// pion's per-allocation readers exit once their sockets are
		// closed; give them a moment so callers see a quiet process.
		for i := 0; i < 100 && s.turn.AllocationCount() > 0; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return err
}
