package gateway

import (
	"fmt"

	"github.com/mediaedge/mediaedge/internal/steer"
)

// Steering (docs/gateway.md, "Steering"): every dedicated socket is its
// own epoll entry, and at 50 packets per second per call a worker would
// wake and call recvmmsg for one datagram per socket. With steering, an
// sk_lookup BPF program (internal/steer) hands the datagrams of every
// dedicated port to a pair of target sockets per worker (IPv4, IPv6),
// which the worker drains in batches; each datagram's original
// destination (IP_ORIGDSTADDR) names the dedicated socket it was for, and
// from there the packet takes the same path as if that socket had read
// it. Replies still leave from the dedicated socket's address and port.

// startSteering loads the steering program when cfg asks for it, and
// returns nil when the gateway runs without. With auto it logs once why
// not; with on the reason is an error.
func (g *Gateway) startSteering(cfg *Config) (*steer.Steerer, error) {
	mode := cfg.Steering
	if mode == SteeringOff || (mode == SteeringAuto && !usesDedicated(cfg)) {
		// auto without a dedicated port to steer: the program would
		// only add a map look-up to every UDP datagram the namespace
		// receives.
		return nil, nil
	}
	st, err := g.newSteerer()
	if err == nil {
		return st, nil
	}
	if mode == SteeringOn {
		return nil, fmt.Errorf("%w: %w", errSteeringOn, err)
	}
	g.log.Warn("steering unavailable; dedicated sockets are read one by one", "err", err)
	return nil, nil
}

// attachSteering opens every worker's target sockets and adds them to st.
// A failure undoes what it did.
func (g *Gateway) attachSteering(st *steer.Steerer, workers []*worker, cfg *Config) error {
	for i, w := range workers {
		if err := w.sys.openSteering(st, cfg); err != nil {
			for _, w := range workers[:i] {
				w.sys.closeSteering()
			}
			return err
		}
	}
	return nil
}

// steerRefused logs, once per gateway, that the steerer refused a
// dedicated socket's entry (its map full, say): that socket is read on
// its own, as without steering. Safe for concurrent use.
func (g *Gateway) steerRefused(err error) {
	g.steerRefusedOnce.Do(func() {
		g.log.Warn("steering refused a dedicated socket; it is read on its own", "err", err)
	})
}

// usesDedicated reports whether the gateway may open dedicated ports under
// cfg: a leg in dedicated port mode, or an ng listener whose calls get
// their own ports. Both need a restart to change.
func usesDedicated(cfg *Config) bool {
	ng := (cfg.NG.Listen != "" || cfg.NG.ListenTCP != "") && cfg.NG.PortMode != PortsShared
	return cfg.Internal.PortMode == PortsDedicated || cfg.Cloud.PortMode == PortsDedicated || ng
}
