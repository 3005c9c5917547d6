package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Create sets up a session and returns it with the gateway's own a=crypto
// line for each leg.
func (g *Gateway) Create(ctx context.Context, req CreateRequest) (*SessionInfo, error) {
	if g.draining.Load() {
		g.metrics.refused.WithLabelValues("draining").Inc()
		return nil, ErrDraining
	}
	cfg := g.cfg.Load()
	var plans [2]legPlan
	for id, r := range []*LegRequest{&req.Internal, &req.Cloud} {
		p, err := planLeg(legID(id).String(), r, legConfig(cfg, legID(id)), &cfg.DTLS)
		if err != nil {
			plans[0].wipe()
			g.metrics.refused.WithLabelValues("invalid").Inc()
			return nil, err
		}
		plans[id] = p
	}
	defer plans[0].wipe()
	defer plans[1].wipe()
	if plans[0].peer != nil && plans[1].peer != nil && sameKey(plans[0].peer, plans[1].peer) {
		g.metrics.refused.WithLabelValues("invalid").Inc()
		return nil, &RequestError{Field: "cloud.crypto", Err: errors.New("the legs' peer keys are identical: legs never share a master key")}
	}
	if req.ID != "" && !validID(req.ID) {
		g.metrics.refused.WithLabelValues("invalid").Inc()
		return nil, &RequestError{Field: "id", Err: fmt.Errorf("want 1 to %d characters of [A-Za-z0-9._-]", maxIDLen)}
	}

	g.mu.Lock()
	if g.state != "running" {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	if len(g.sessions) >= cfg.MaxSessions {
		g.mu.Unlock()
		g.metrics.refused.WithLabelValues("limit").Inc()
		return nil, fmt.Errorf("gateway: %d sessions open (max_sessions): %w", len(g.sessions), ErrLimit)
	}
	id := req.ID
	if id == "" {
		for id = newID(); g.sessions[id] != nil; id = newID() {
		}
	} else if g.sessions[id] != nil {
		g.mu.Unlock()
		return nil, fmt.Errorf("gateway: session %q: %w", id, ErrExists)
	}
	w := g.workers[g.rr%len(g.workers)]
	g.rr++
	s := &session{id: id, created: time.Now(), w: w}
	g.sessions[id] = s // reserves the id and counts against max_sessions
	g.mu.Unlock()

	if err := g.buildLegs(s, cfg, &plans); err != nil {
		g.abandon(s, true)
		g.metrics.refused.WithLabelValues("ports").Inc()
		return nil, err
	}
	info, err := g.install(ctx, s, true)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	n := len(g.sessions)
	g.mu.Unlock()
	g.metrics.created.Inc()
	g.metrics.sessions.Set(float64(n))
	g.events.add(Event{Type: EventCreated, Session: id}, nil)
	g.log.Debug("session created", "session", id, "internal", info.Internal.Local, "cloud", info.Cloud.Local)
	return &info, nil
}

// install hands a built session to its worker (s.w) and returns its
// snapshot (with keys when withKeys). On failure the session is undone and
// its id freed; the sockets are closed by whoever owns them by then.
func (g *Gateway) install(ctx context.Context, s *session, withKeys bool) (SessionInfo, error) {
	w := s.w
	var info SessionInfo
	var addErr error
	err := w.do(ctx, func() {
		if addErr = w.addSession(s); addErr == nil {
			info = w.snapshot(s, withKeys)
		}
	})
	switch {
	case errors.Is(err, ErrClosed):
		// Never queued: the sockets are still ours.
		g.abandon(s, true)
		return SessionInfo{}, err
	case err != nil:
		// Queued but not yet run (the context ended): the end queued
		// after it undoes it, sockets included.
		_ = w.do(context.Background(), func() { w.endSession(s, EndDeleted) })
		g.abandon(s, false)
		return SessionInfo{}, err
	case addErr != nil:
		// addSession closed the sockets when it failed.
		g.abandon(s, false)
		return SessionInfo{}, addErr
	}
	return info, nil
}

// abandon undoes a session that never reached its worker: it frees the
// id and wipes the keys, and closes the sockets when they are still the
// caller's.
func (g *Gateway) abandon(s *session, closeSockets bool) {
	g.mu.Lock()
	if g.sessions[s.id] == s {
		delete(g.sessions, s.id)
	}
	g.mu.Unlock()
	if !closeSockets {
		return
	}
	for id := range s.legs {
		l := &s.legs[id]
		if l.rtp != nil && l.rtp.dm == nil {
			g.closeSock(l.rtp)
		}
		if l.rtcp != nil && l.rtcp != l.rtp && l.rtcp.dm == nil {
			g.closeSock(l.rtcp)
		}
		l.rtp, l.rtcp = nil, nil
		l.wipe()
	}
}

// buildLegs binds the legs' sockets (or picks the worker's shared ones)
// and creates their keys: the peer's as given, the gateway's own fresh
// from crypto/rand.
func (g *Gateway) buildLegs(s *session, cfg *Config, plans *[2]legPlan) error {
	for id := range s.legs {
		p := &plans[id]
		lc := legConfig(cfg, legID(id))
		l := &s.legs[id]
		*l = leg{s: s, id: legID(id), mux: p.mux, plain: p.peer == nil, symmetric: lc.Symmetric,
			rocReset: lc.ROC == ROCReset, remote: p.remote, remoteRTCP: p.remoteRTCP,
			useMKI: p.mki, lifetime: p.lifetime}
		if p.mux {
			l.remoteRTCP = l.remote
		}
		if p.dtls != nil {
			if !p.noICE {
				ic, err := newICECreds()
				if err != nil {
					return fmt.Errorf("gateway: ICE credentials: %w", err)
				}
				l.ice = ic
			}
			if err := g.buildDTLSLeg(l, lc, p.dtls); err != nil {
				return err
			}
			continue
		}
		if lc.PortMode == PortsShared {
			sh := s.w.shared[id]
			l.rtp, l.rtcp = sh.rtp, sh.rtcp
			if p.mux {
				l.rtcp = sh.rtp
			}
		} else if p.mux {
			so, err := g.bindPort(lc, legID(id), false)
			if err != nil {
				return err
			}
			so.owner = l
			l.rtp, l.rtcp = so, so
		} else {
			rtp, rtcp, err := g.bindPair(lc, legID(id))
			if err != nil {
				return err
			}
			rtp.owner, rtcp.owner = l, l
			l.rtp, l.rtcp = rtp, rtcp
		}
		if l.plain {
			continue
		}
		l.inEpoch = 1
		replay := max(lc.ReplayWindow, p.peer.WSH)
		for _, mk := range p.peer.Keys {
			k := newKeyState(p.peer.Suite, mk, 1, replay)
			k.unencSRTP, k.unencSRTCP = p.peer.UnencryptedSRTP, p.peer.UnencryptedSRTCP
			l.in = append(l.in, k)
		}
		var mki []byte
		if p.mki {
			mki = mkiForEpoch(1)
		}
		mk, err := generateKey(p.suite, p.lifetime, mki)
		if err != nil {
			return err
		}
		l.out = newKeyState(p.suite, mk, 1, 0)
		wipe(mk.Key)
		wipe(mk.Salt)
		// The gateway's own key follows the peer's choice of
		// authentication-only protection only when the suites match.
		if p.suite == p.peer.Suite {
			l.out.unencSRTP, l.out.unencSRTCP = p.peer.UnencryptedSRTP, p.peer.UnencryptedSRTCP
		}
	}
	return nil
}

// lookup returns session id.
func (g *Gateway) lookup(id string) (*session, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != "running" {
		return nil, ErrClosed
	}
	s := g.sessions[id]
	if s == nil {
		return nil, fmt.Errorf("gateway: session %q: %w", clip(id), ErrNotFound)
	}
	return s, nil
}

// Session returns session id without keys.
func (g *Gateway) Session(ctx context.Context, id string) (*SessionInfo, error) {
	s, err := g.lookup(id)
	if err != nil {
		return nil, err
	}
	var info SessionInfo
	var gone bool
	if err := s.w.do(ctx, func() {
		if gone = s.ended || !s.added; !gone {
			info = s.w.snapshot(s, false)
		}
	}); err != nil {
		return nil, err
	}
	if gone {
		return nil, fmt.Errorf("gateway: session %q: %w", clip(id), ErrNotFound)
	}
	return &info, nil
}

// Sessions returns every session without keys, ordered by creation.
func (g *Gateway) Sessions(ctx context.Context) ([]SessionInfo, error) {
	g.mu.Lock()
	if g.state != "running" {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	byWorker := map[*worker][]*session{}
	for _, s := range g.sessions {
		byWorker[s.w] = append(byWorker[s.w], s)
	}
	g.mu.Unlock()
	out := []SessionInfo{}
	for w, ss := range byWorker {
		if err := w.do(ctx, func() {
			for _, s := range ss {
				if !s.ended && s.added {
					out = append(out, w.snapshot(s, false))
				}
			}
		}); err != nil {
			return nil, err
		}
	}
	sortInfos(out)
	return out, nil
}

// Update changes a session's remote addresses or peer keys.
func (g *Gateway) Update(ctx context.Context, id string, req UpdateRequest) (*SessionInfo, error) {
	if req.Internal == nil && req.Cloud == nil {
		return nil, &RequestError{Field: "internal", Err: errors.New("nothing to change: give internal or cloud")}
	}
	s, err := g.lookup(id)
	if err != nil {
		return nil, err
	}
	cfg := g.cfg.Load()
	type change struct {
		remote, remoteRTCP netip.AddrPort
		peer               *Crypto
		// rehandshake: a DTLS leg's new fingerprint, setup or ICE restart
		fingerprint, setup string
		iceRestart         bool
	}
	var ch [2]*change
	for i, u := range []*LegUpdate{req.Internal, req.Cloud} {
		if u == nil {
			continue
		}
		name := legID(i).String()
		c := &change{}
		if c.remote, err = parseRemote(u.Remote); err != nil {
			return nil, &RequestError{Field: name + ".remote", Err: err}
		}
		if c.remoteRTCP, err = parseRemote(u.RemoteRTCP); err != nil {
			return nil, &RequestError{Field: name + ".remote_rtcp", Err: err}
		}
		if u.Crypto != "" {
			if c.peer, err = ParseCrypto(u.Crypto); err != nil {
				return nil, &RequestError{Field: name + ".crypto", Err: err}
			}
			defer c.peer.Wipe()
			if err := checkPeerCrypto(c.peer, legConfig(cfg, legID(i))); err != nil {
				return nil, &RequestError{Field: name + ".crypto", Err: err}
			}
		}
		c.fingerprint, c.setup, c.iceRestart = u.Fingerprint, u.Setup, u.ICERestart
		if c.fingerprint != "" {
			if _, err := ParseFingerprint(c.fingerprint); err != nil {
				return nil, &RequestError{Field: name + ".fingerprint", Err: err}
			}
		}
		ch[i] = c
	}
	var info SessionInfo
	var opErr error
	if err := s.w.do(ctx, func() {
		w := s.w
		if s.ended || !s.added {
			opErr = fmt.Errorf("gateway: session %q: %w", clip(id), ErrNotFound)
			return
		}
		// Check everything before changing anything.
		for i, c := range ch {
			if c == nil {
				continue
			}
			l := &s.legs[i]
			if c.peer != nil && l.plain {
				opErr = &RequestError{Field: legID(i).String() + ".crypto", Err: errors.New("the leg carries plain RTP")}
				return
			}
			if c.remoteRTCP.IsValid() && l.mux && c.remoteRTCP != c.remote {
				opErr = &RequestError{Field: legID(i).String() + ".remote_rtcp", Err: errors.New("the leg uses rtcp-mux")}
				return
			}
			if c.peer != nil && l.dtls != nil {
				opErr = &RequestError{Field: legID(i).String() + ".crypto", Err: errors.New("a DTLS leg takes its keys from the handshake")}
				return
			}
			if (c.fingerprint != "" || c.setup != "" || c.iceRestart) && l.dtls == nil {
				opErr = &RequestError{Field: legID(i).String() + ".fingerprint", Err: errors.New("fingerprint, setup and ice_restart are for DTLS legs")}
				return
			}
		}
		if ch[0] != nil && ch[0].peer != nil && ch[1] != nil && ch[1].peer != nil && sameKey(ch[0].peer, ch[1].peer) {
			opErr = &RequestError{Field: "cloud.crypto", Err: errors.New("the legs' peer keys are identical")}
			return
		}
		for i, c := range ch {
			if c == nil {
				continue
			}
			l := &s.legs[i]
			if c.remote.IsValid() || c.remoteRTCP.IsValid() {
				w.trial.reconsider()
			}
			if c.remote.IsValid() {
				l.remote, l.latched = c.remote, false
				if l.mux {
					l.remoteRTCP = c.remote
				}
			}
			if c.remoteRTCP.IsValid() {
				l.remoteRTCP = c.remoteRTCP
			}
			if l.dtls != nil && (c.fingerprint != "" || c.setup != "" || c.iceRestart) {
				if err := w.dtlsUpdate(l, c.fingerprint, c.setup, c.iceRestart); err != nil {
					opErr = &RequestError{Field: legID(i).String() + ".setup", Err: err}
					return
				}
			}
			if c.peer != nil {
				w.setPeerKeys(l, c.peer)
				g.events.add(Event{Type: EventPeerKey, Session: s.id, Leg: l.id.String(), KeyEpoch: l.inEpoch}, nil)
			}
		}
		info = w.snapshot(s, false)
		// An ICE restart answers with the new password, as create does:
		// the peer's SDP needs it.
		for i, li := range []*LegInfo{&info.Internal, &info.Cloud} {
			if c := ch[i]; c != nil && c.iceRestart && li.DTLS != nil && li.DTLS.ICE != nil && s.legs[i].ice != nil {
				li.DTLS.ICE.Pwd = s.legs[i].ice.pwd
			}
		}
	}); err != nil {
		return nil, err
	}
	if opErr != nil {
		return nil, opErr
	}
	return &info, nil
}

// Rekey gives leg's outbound direction a new key and returns it.
func (g *Gateway) Rekey(ctx context.Context, id, legName string) (*RekeyResult, error) {
	var lid legID
	switch legName {
	case "internal":
		lid = legInternal
	case "cloud":
		lid = legCloud
	default:
		return nil, &RequestError{Field: "leg", Err: fmt.Errorf("%q: want internal or cloud", clip(legName))}
	}
	s, err := g.lookup(id)
	if err != nil {
		return nil, err
	}
	var res *RekeyResult
	var opErr error
	if err := s.w.do(ctx, func() {
		w := s.w
		if s.ended || !s.added {
			opErr = fmt.Errorf("gateway: session %q: %w", clip(id), ErrNotFound)
			return
		}
		l := &s.legs[lid]
		if l.plain {
			opErr = &RequestError{Field: "leg", Err: errors.New("the leg carries plain RTP")}
			return
		}
		if l.dtls != nil {
			opErr = &RequestError{Field: "leg", Err: errors.New("a DTLS leg is re-keyed by a new handshake: update its fingerprint, setup or ice_restart")}
			return
		}
		k := w.rekeyOut(l, triggerAPI, false)
		if k == nil {
			opErr = errors.New("gateway: re-key failed: no randomness")
			return
		}
		res = &RekeyResult{Leg: legName, Crypto: k.crypto().String(), KeyEpoch: k.epoch,
			ActiveAt: w.wall.Add(time.Duration(l.switchAt - w.now))}
		if l.next == nil {
			res.ActiveAt = w.wall
		}
	}); err != nil {
		return nil, err
	}
	if opErr != nil {
		return nil, opErr
	}
	return res, nil
}

// Delete ends session id.
func (g *Gateway) Delete(ctx context.Context, id string) error {
	g.mu.Lock()
	s := g.sessions[id]
	running := g.state == "running"
	if s != nil && running {
		delete(g.sessions, id)
	}
	g.mu.Unlock()
	if !running {
		return ErrClosed
	}
	if s == nil {
		return fmt.Errorf("gateway: session %q: %w", clip(id), ErrNotFound)
	}
	return s.w.do(ctx, func() { s.w.endSession(s, EndDeleted) })
}
