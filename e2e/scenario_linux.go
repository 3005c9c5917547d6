package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// Options configure Run.
type Options struct {
	// Prefix names the run's namespaces and work directory
	// ("<prefix>-<pid>-..."); leftovers of dead runs with the same prefix
	// are removed first.
	Prefix string
	// Bin is the mediaedge binary to run on the edge.
	Bin string
	// EdgeSysctl is the sysctl.d file applied to the edge namespace, as
	// an installed edge gets it (the tree's systemd/mediaedge.sysctl);
	// empty applies none.
	EdgeSysctl string
	// KeepWorkDir keeps the work directory (configuration, daemon log,
	// captures) instead of removing it at the end.
	KeepWorkDir bool
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// OnCheck is called with each check as soon as it is decided.
	OnCheck func(Check)
	// MediaWindow is how long audio is measured and captured on the
	// uplink; default 3 s.
	MediaWindow time.Duration
	// Hold, when set, is called with the live topology and the running
	// daemon's work directory just before the SIGTERM step (the demo's
	// -hold waits there while the operator looks around).
	Hold func(ctx context.Context, t *Topology, workDir string)
}

// teardownTimeout bounds the clean-up, which runs even when ctx is done.
const teardownTimeout = 30 * time.Second

// Run builds the topology, runs mediaedge on the edge and checks the claims
// of the scenario one by one, then removes everything it made, also when
// ctx is cancelled (an interrupted demo). It returns an error when the
// scenario could not get far enough to check anything more (the checks
// made so far are in the Result): ErrNotRoot and ErrMissingTool mean the
// machine cannot run it at all.
func Run(ctx context.Context, opt Options) (*Result, error) {
	if opt.Prefix == "" || opt.Bin == "" {
		return nil, errors.New("e2e: Options.Prefix and Options.Bin are required")
	}
	if opt.MediaWindow <= 0 {
		opt.MediaWindow = 3 * time.Second
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	s := &scenario{opt: opt, res: &Result{}, t0: time.Now(), echoes: map[netip.AddrPort]*Echo{},
		interrupted: func() bool { return ctx.Err() != nil }}
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		defer cancel()
		s.teardown(tctx)
		s.res.Took = time.Since(s.t0)
	}()
	err := s.run(ctx)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return s.res, err
}

// preflight checks privileges and tools before anything is made.
func preflight() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	for _, tool := range []struct{ name, pkg string }{
		{"ip", "iproute2"}, {"nft", "nftables"}, {"tcpdump", "tcpdump"}, {"sysctl", "procps"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return fmt.Errorf("%w: %s (apt-get install %s)", ErrMissingTool, tool.name, tool.pkg)
		}
	}
	return nil
}

// scenario is one run's state. Everything it starts is recorded here so
// that teardown can end it whatever step failed.
type scenario struct {
	opt Options
	res *Result
	t0  time.Time
	dir string
	// interrupted reports whether the run's context is done: a check
	// decided after that point is not evidence and is not recorded.
	interrupted func() bool

	topo     *Topology
	edge     *Edge
	turns    []*TURNClient
	peers    []*Peer
	echoes   map[netip.AddrPort]*Echo
	baseline []string

	// the audio flows, each way: through the relay (IPv4 and IPv6
	// allocations), through the gateway, and straight from the client
	// (forwarded by the edge, IPv4 and IPv6)
	turnUp, turnDown, turn6Up, turn6Down, gwUp, gwDown *Flow
	directUp, directDown, direct6Up, direct6Down       *Flow
	keys                                               scenarioKeys
	sessionID                                          string
	gwCloudPeer                                        *Peer          // the cloud media server's end of the gateway call
	gwInternal, gwCloud                                netip.AddrPort // the gateway's local leg addresses
}

// scenarioKeys are the SRTP keys of the scenario. None is ever printed.
type scenarioKeys struct {
	// the gateway's internal leg: the client's key, the gateway's own
	kInt, gInt srtpcheck.Key
	// the gateway's cloud leg: the cloud server's key, the gateway's own
	// (gCloud2 after the re-key through the API)
	kCloud, gCloud, gCloud2 srtpcheck.Key
	// end to end through the TURN relay (as DTLS-SRTP would give)
	eUp, eDown, e6Up, e6Down srtpcheck.Key
	// end to end on the client's direct calls
	dUp, dDown, d6Up, d6Down srtpcheck.Key
}

func (s *scenario) progress(format string, args ...any) {
	if s.opt.Progress != nil {
		fmt.Fprintf(s.opt.Progress, "==> "+format+"\n", args...)
	}
}

func (s *scenario) record(c Check) {
	if s.interrupted() {
		return
	}
	s.res.Checks = append(s.res.Checks, c)
	if s.opt.OnCheck != nil {
		s.opt.OnCheck(c)
	}
}

// run performs the steps in order. Each step records its checks; a step
// whose failure leaves nothing to check afterwards also returns an error.
func (s *scenario) run(ctx context.Context) error {
	removed, err := CleanLeftovers(ctx, s.opt.Prefix)
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		s.progress("removed leftovers of an earlier run: %v", removed)
	}
	if s.dir, err = newWorkDir(s.opt.Prefix); err != nil {
		return err
	}
	s.res.WorkDir = s.dir
	if err := s.genKeys(); err != nil {
		return err
	}
	steps := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"building the namespaces", s.stepTopology},
		{"starting mediaedge on the edge", s.stepDaemon},
		{"allocating on the TURN relay from the client", s.stepTURN},
		{"creating a gateway session over the control API", s.stepGateway},
		{"calling the cloud media server directly from the client", s.stepDirect},
		{"measuring and capturing audio on the edge", s.stepMediaWindow},
		{"probing other destinations from the client", s.stepOtherTraffic},
		{"scraping the metrics endpoint", s.stepMetrics},
		{"flapping the uplink", s.stepFlap},
		{"reloading with a new media prefix (SIGHUP)", s.stepReload},
		{"stopping mediaedge (SIGTERM)", s.stepStop},
	}
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.progress("%s", st.what)
		if err := st.fn(ctx); err != nil {
			return err
		}
	}
	s.res.Complete = ctx.Err() == nil
	return nil
}

// genKeys makes the keys of the peers; the gateway makes its own.
func (s *scenario) genKeys() error {
	suite, err := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		return err
	}
	for _, k := range []*srtpcheck.Key{&s.keys.kInt, &s.keys.kCloud, &s.keys.eUp, &s.keys.eDown, &s.keys.e6Up, &s.keys.e6Down,
		&s.keys.dUp, &s.keys.dDown, &s.keys.d6Up, &s.keys.d6Down} {
		if *k, err = srtpcheck.NewKey(suite); err != nil {
			return err
		}
	}
	return nil
}

// teardown ends everything in the reverse order of its making. Errors are
// reported on Progress: there is nothing else to do about them.
func (s *scenario) teardown(ctx context.Context) {
	s.progress("cleaning up")
	for _, p := range s.peers {
		p.Close()
	}
	for _, tc := range s.turns {
		tc.Close()
	}
	if s.edge != nil {
		if s.edge.Running() {
			if _, err := s.edge.Stop(); err != nil {
				s.progress("stopping mediaedge: %v", err)
			}
		}
		s.res.DaemonLog = s.edge.LogTail(60)
	}
	for _, e := range s.echoes {
		e.Close()
	}
	if err := s.topo.Close(ctx); err != nil {
		s.progress("removing the namespaces: %v", err)
	}
	if s.dir != "" && !s.opt.KeepWorkDir {
		_ = os.RemoveAll(s.dir)
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitFor polls cond every 50 ms until it is true, ctx is done or timeout
// passes; it reports whether cond became true.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || sleep(ctx, 50*time.Millisecond) != nil {
			return false
		}
	}
}
