package gateway

import (
	"time"
)

// NGInfo is what SessionInfo shows of the ng call behind a session: one
// session per m= line of the call. Set when the session is created,
// never changed.
type NGInfo struct {
	CallID    string `json:"call_id"`
	FromTag   string `json:"from_tag"`
	ToTag     string `json:"to_tag"`
	ViaBranch string `json:"via_branch,omitempty"`
	// Media is the m= line (1 = the first), Type its media type.
	Media int    `json:"media"`
	Type  string `json:"type"`
	// OffererLeg is the leg of the side that sent the first offer
	// (internal or cloud), by the direction flag.
	OffererLeg string `json:"offerer_leg"`
}

// ngStart turns an answered stream into a gateway session: the sockets
// the stream holds, the endpoints' keys as they sent them and the
// gateway's own keys as it announced them. The session owns the sockets
// from then on.
func (g *Gateway) ngStart(c *ngCall, st *ngStream, cfg *Config) (*SessionInfo, error) {
	s := &session{id: "ng-" + newID(), created: time.Now(), ng: &NGInfo{CallID: c.id, FromTag: c.tags[0], ToTag: c.tags[1],
		ViaBranch: c.viaBranch, Media: st.index + 1, Type: st.typ, OffererLeg: c.legs[0].String()}}
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
	// From here on the session owns the sockets.
	st.socks = [2]ngSocks{}

	g.mu.Lock()
	if g.state != "running" {
		g.mu.Unlock()
		g.abandon(s, true)
		return nil, ErrClosed
	}
	w := st.w
	if w == nil {
		w = g.workers[g.rr%len(g.workers)]
		g.rr++
	}
	s.w = w
	g.sessions[s.id] = s
	g.mu.Unlock()

	ctx, cancel := ngContext()
	defer cancel()
	info, err := g.install(ctx, s, false)
	if err != nil {
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
