package gateway

import (
	"fmt"
	"slices"
	"time"
)

// NGInfo is what SessionInfo shows of the ng call behind a session: one
// session per m= line of the call. Set when the session is created; a
// forked answer that takes the media sets a new one (ngRetag). A value
// once set is never changed: safe to read from any goroutine.
type NGInfo struct {
	CallID  string `json:"call_id"`
	FromTag string `json:"from_tag"`
	// ToTag is the answerer carrying the media: with an INVITE forked
	// after one offer, the latest answer's to-tag; EarlierToTags are the
	// to-tags of the earlier answers still known (not deleted), oldest
	// first.
	ToTag         string   `json:"to_tag"`
	EarlierToTags []string `json:"earlier_to_tags,omitempty"`
	ViaBranch     string   `json:"via_branch,omitempty"`
	// Media is the m= line (1 = the first), Type its media type.
	Media int    `json:"media"`
	Type  string `json:"type"`
	// OffererLeg is the leg of the side that sent the first offer
	// (internal or cloud), by the direction flag.
	OffererLeg string `json:"offerer_leg"`
	// BundledWith names, per leg, the session whose transport (socket,
	// ICE, DTLS) the leg shares by BUNDLE; absent: its own.
	BundledWith map[string]string `json:"bundled_with,omitempty"`
}

// ngBuild turns an answered stream into a gateway session, not yet
// installed: the sockets the stream holds, the endpoints' keys as they
// sent them and the gateway's own keys as it announced them, or the DTLS
// keying of a DTLS side. A bundled stream's leg takes no socket: it goes
// through its transport stream's leg (built before it, in stream order).
func (g *Gateway) ngBuild(c *ngCall, st *ngStream, cfg *Config) (*session, error) {
	s := &session{id: "ng-" + newID(), created: time.Now()}
	info := &NGInfo{CallID: c.id, FromTag: c.tags[0], ToTag: c.tags[1], EarlierToTags: slices.Clone(c.others),
		ViaBranch: c.viaBranch, Media: st.index + 1, Type: st.typ, OffererLeg: c.legs[0].String()}
	for side := 0; side < 2; side++ {
		lid := c.legs[side]
		lc := legConfig(cfg, lid)
		l := &s.legs[lid]
		*l = leg{s: s, id: lid, mux: st.mux[side], plain: st.plain[side], symmetric: lc.Symmetric,
			rocReset: lc.ROC == ROCReset, remote: st.remote[side], remoteRTCP: st.remoteRTCP[side],
			lifetime: lc.KeyLifetime}
		if l.mux {
			l.remoteRTCP = l.remote
		}
		l.ice = st.ice[side]
		if v := st.via[side]; v != nil {
			// BUNDLE: the transport stream's leg owns the socket, the ICE
			// agent, the handshake and the keys.
			if v.sess == nil {
				return nil, fmt.Errorf("m= line %d: its BUNDLE transport (m= line %d) has no session", st.index+1, v.index+1)
			}
			l.via = &v.sess.legs[lid]
			l.mux, l.plain, l.ice = true, false, nil
			if info.BundledWith == nil {
				info.BundledWith = map[string]string{}
			}
			info.BundledWith[lid.String()] = v.sess.id
			continue
		}
		so := st.socks[lid]
		switch {
		case so.rtp.dm != nil: // shared
			l.rtp, l.rtcp = so.rtp, so.rtcp
			if l.mux {
				l.rtcp = so.rtp
			}
		case l.mux:
			// The RTCP socket was bound in case the peer would not mux;
			// its port stays reserved with the RTP port's pair.
			closeFD(so.rtcp.fd)
			so.rtcp.fd = -1
			so.rtp.owner = l
			l.rtp, l.rtcp = so.rtp, so.rtp
		default:
			so.rtp.owner, so.rtcp.owner = l, l
			l.rtp, l.rtcp = so.rtp, so.rtcp
		}
		if st.dtls[side] {
			// The role as announced: newDTLSPlan takes the peer's setup,
			// so hand it the opposite of the gateway's.
			peer := string(DTLSActive)
			if st.role[side] == DTLSActive {
				peer = string(DTLSPassive)
			}
			plan, err := newDTLSPlan(&cfg.DTLS, peer, []string{st.peerFP[side]}, nil)
			if err != nil {
				return nil, fmt.Errorf("m= line %d: %w", st.index+1, err)
			}
			plan.cert = c.cert // the one the offer announced
			if err := setupDTLSLeg(l, plan); err != nil {
				return nil, fmt.Errorf("m= line %d: %w", st.index+1, err)
			}
			continue
		}
		if l.plain {
			continue
		}
		peer, own := st.peer[side], st.own[side]
		l.inEpoch = 1
		replay := max(lc.ReplayWindow, peer.WSH)
		for _, mk := range peer.Keys {
			k := newKeyState(peer.Suite, mk, 1, replay)
			k.unencSRTP, k.unencSRTCP = peer.UnencryptedSRTP, peer.UnencryptedSRTCP
			l.in = append(l.in, k)
		}
		l.out = newKeyState(own.suite, own.mk, 1, 0)
		l.lifetime = own.mk.Lifetime
	}
	s.ng.Store(info)
	// From here on the session owns the sockets.
	st.socks = [2]ngSocks{}
	st.sess = s
	return s, nil
}

// ngRetag shows c's current answerer, and the earlier ones still known,
// in the NGInfo of each of c's sessions: after a forked answer took the
// media or an earlier answerer was deleted. Locked: ngServer.mu is held.
func ngRetag(c *ngCall) {
	for _, st := range c.streams {
		if st.sess == nil {
			continue
		}
		old := st.sess.ng.Load()
		if old == nil || (old.ToTag == c.tags[1] && slices.Equal(old.EarlierToTags, c.others)) {
			continue
		}
		info := *old
		info.ToTag = c.tags[1]
		info.EarlierToTags = slices.Clone(c.others)
		st.sess.ng.Store(&info)
	}
}

// ngLinkBundles gives each transport leg of c the routing table of its
// bundle. Called once every stream's session is built, before any is
// installed.
func ngLinkBundles(c *ngCall) {
	for side := 0; side < 2; side++ {
		for _, t := range c.streams {
			if t.sess == nil || t.via[side] != nil {
				continue
			}
			lid := c.legs[side]
			legs := []*leg{&t.sess.legs[lid]}
			pts := [][]uint8{t.pts}
			for _, st := range c.streams {
				if st.via[side] == t && st.sess != nil {
					legs = append(legs, &st.sess.legs[lid])
					pts = append(pts, st.pts)
				}
			}
			if len(legs) > 1 {
				t.sess.legs[lid].bundle = newBundle(legs, pts)
			}
		}
	}
}

// ngInstall hands a built session to a worker (its bundle transport's,
// or the next) and returns its snapshot. On failure the session is
// undone; its sockets are closed.
func (g *Gateway) ngInstall(st *ngStream, s *session) (*SessionInfo, error) {
	g.mu.Lock()
	if g.state != "running" {
		g.mu.Unlock()
		g.abandon(s, true)
		st.sess = nil
		return nil, ErrClosed
	}
	for id := range s.legs {
		if v := s.legs[id].via; v != nil {
			s.w = v.s.w // the bundle's transport's worker, installed first
		}
	}
	if s.w == nil {
		w := st.w
		if w == nil {
			w = g.workers[g.rr%len(g.workers)]
			g.rr++
		}
		s.w = w
	}
	g.sessions[s.id] = s
	g.mu.Unlock()

	ctx, cancel := ngContext()
	defer cancel()
	info, err := g.install(ctx, s, false)
	if err != nil {
		st.sess = nil
		return nil, err
	}
	st.sid = s.id
	g.mu.Lock()
	n := len(g.sessions)
	g.mu.Unlock()
	g.metrics.created.Inc()
	g.metrics.sessions.Set(float64(n))
	g.events.add(Event{Type: EventCreated, Session: s.id}, nil)
	g.log.Debug("ng session created", "session", s.id, "internal", info.Internal.Local, "cloud", info.Cloud.Local)
	return &info, nil
}
