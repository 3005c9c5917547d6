package gateway

// Drain stops the gateway from accepting new sessions: Create returns
// ErrDraining (HTTP 503 on the control API) and an ng offer of a new call
// gets an error reply. Live sessions keep relaying and can still be
// updated, re-keyed, re-offered and deleted. It is safe for
// concurrent use and idempotent; only a restart undoes it.
func (g *Gateway) Drain() {
	if g.draining.Swap(true) {
		return
	}
	g.log.Info("draining: new sessions are refused (503)", "sessions", g.Active())
}

// Draining reports whether Drain was called.
func (g *Gateway) Draining() bool { return g.draining.Load() }

// Active returns the number of live sessions.
func (g *Gateway) Active() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}
