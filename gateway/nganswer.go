package gateway

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// ngTimeout bounds the time an ng request waits for a worker.
const ngTimeout = 2 * time.Second

func ngContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ngTimeout)
}

// answer completes an offered call: the answerer's key and address, the
// gateway's key toward the offerer, one gateway session per stream, and
// the SDP toward the offerer. On error the caller frees the call.
func (s *ngServer) answer(c *ngCall, toTag string, f *ngFlags, body *ng.SDP) ([]byte, error) {
	if len(body.Media) != len(c.streams) {
		return nil, refuse("the answer has %d m= lines, the offer %d", len(body.Media), len(c.streams))
	}
	cfg := s.g.cfg.Load()
	c.tags[1] = toTag
	plans := make([]ng.MediaPlan, len(c.streams))
	if err := c.checkBundleAnswer(body); err != nil {
		return nil, err
	}
	for i, st := range c.streams {
		m := body.Media[i]
		if st.disabled {
			continue
		}
		if m.Port == 0 {
			c.promoteBundle(st, 0)
			s.freeStream(st)
			continue
		}
		if err := s.answerStream(c, cfg, st, m, f); err != nil {
			return nil, err
		}
		if st.via[0] != nil {
			continue // the bundle's transport has the ICE agent
		}
		if f.iceForce || legConfig(cfg, c.legs[0]).ICELite {
			if cfg.NG.PortMode != PortsDedicated {
				return nil, refuse("ICE force needs gateway.ng.port_mode dedicated")
			}
			ic, err := newICECreds()
			if err != nil {
				return nil, err
			}
			st.ice[0] = ic
			if st.dtls[0] {
				st.remote[0], st.remoteRTCP[0] = netip.AddrPort{}, netip.AddrPort{} // from ICE
			}
		}
	}
	c.answered = true
	s.pending -= len(c.streams)
	// Every session is built before any is installed: a bundle's routing
	// table names them all.
	for i, st := range c.streams {
		if st.disabled {
			continue
		}
		if _, err := s.g.ngBuild(c, st, cfg); err != nil {
			return nil, refuse("m= line %d: %v", i+1, err)
		}
	}
	ngLinkBundles(c)
	for i, st := range c.streams {
		if st.disabled {
			continue
		}
		info, err := s.g.ngInstall(st, st.sess)
		if err != nil {
			return nil, refuse("m= line %d: %v", i+1, err)
		}
		plans[i] = st.plan(c, 0, f.proto, info)
	}
	c.bundlePlans(plans, 0)
	return body.Rewrite(plans, c.options(f, 0))
}

// checkBundleAnswer refuses an answer that leaves out of its BUNDLE an
// m= line the gateway offered bundled: the gateway offered one port for
// them all and cannot split them afterwards (RFC 8843 section 7.3.3).
func (c *ngCall) checkBundleAnswer(body *ng.SDP) error {
	if len(c.bundle[1]) < 2 {
		return nil
	}
	for i, st := range c.streams {
		if st.disabled || st.via[1] == nil || i >= len(body.Media) || body.Media[i].Port == 0 {
			continue
		}
		if !body.Media[i].Bundled {
			return refuse("m= line %d: the answer does not accept the offered BUNDLE", i+1)
		}
	}
	for i, st := range c.streams {
		if i < len(body.Media) && body.Media[i].Port == 0 && !st.disabled && hasMembers(c, st, 1) {
			return refuse("m= line %d: the answer rejects the BUNDLE's transport m= line", i+1)
		}
	}
	return nil
}

func hasMembers(c *ngCall, t *ngStream, side int) bool {
	for _, st := range c.streams {
		if st.via[side] == t && !st.disabled {
			return true
		}
	}
	return false
}

// answerStream takes the answerer's key and address for one stream and
// picks the offerer's key and the gateway's own toward it.
func (s *ngServer) answerStream(c *ngCall, cfg *Config, st *ngStream, m ng.Media, f *ngFlags) error {
	n := st.index + 1
	st.pts = unionPTs(st.pts, m.PTs)
	pref := st.pref
	if f.dtlsPassive || f.dtlsActive {
		pref = dtlsPref(cfg, f)
	}
	switch {
	case st.dtls[1] && st.via[1] != nil:
		// A bundled m= line: the transport's m= line carries the DTLS
		// attributes (RFC 8843 section 7.3); a copy here changes nothing.
		st.mux[1] = true
	case st.dtls[1]:
		if m.Fingerprint == "" {
			return refuse("m= line %d: the gateway offered DTLS-SRTP and the answer has no a=fingerprint", n)
		}
		setup := m.Setup
		if setup == "" {
			setup = "active" // RFC 5763 section 5: the answerer's default
		}
		role, err := answerSetup(setup, pref)
		if err != nil {
			return refuse("m= line %d: a=setup %v", n, err)
		}
		st.role[1] = role
		st.peerFP[1], st.peerSetup[1], st.peerUfrag[1], st.peerTLSID[1] = m.Fingerprint, m.Setup, m.ICEUfrag, m.TLSID
		st.mux[1] = true
	case !st.plain[1]:
		lcB := legConfig(cfg, c.legs[1])
		var pick *ownKey
		for _, line := range m.Crypto {
			cr, err := ParseCrypto(line)
			if err != nil {
				continue
			}
			var k *ownKey
			for _, o := range st.offered {
				if o.suite == cr.Suite && (k == nil || o.tag == cr.Tag) {
					k = o
				}
			}
			if k == nil || checkPeerCrypto(cr, lcB) != nil {
				cr.Wipe()
				continue
			}
			pick, st.peer[1] = k, cr
			break
		}
		if pick == nil {
			return refuse("m= line %d: the answer has no a=crypto line for a suite the gateway offered", n)
		}
		st.own[1] = pick
		for _, k := range st.offered {
			if k != pick {
				k.wipe()
			}
		}
		st.offered = nil
	}
	st.remote[1], st.remoteRTCP[1] = remoteOf(st, 1, m)
	st.mux[1] = st.muxOnly || (st.muxOffered && m.Mux)
	if st.dtls[0] && st.via[0] == nil {
		role, err := answerSetup(st.peerSetup[0], pref)
		if err != nil {
			return refuse("m= line %d: the offer's a=setup %v", n, err)
		}
		st.role[0] = role
	}
	if !st.plain[0] && !st.dtls[0] {
		// The offerer's line: the suite the answerer chose when the
		// offerer offered it, else the offerer's first.
		pick := st.cands[0]
		for _, cr := range st.cands {
			if st.peer[1] != nil && cr.Suite == st.peer[1].Suite {
				pick = cr
				break
			}
		}
		for _, cr := range st.cands {
			if cr != pick {
				cr.Wipe()
			}
		}
		st.cands = nil
		st.peer[0] = pick
		lcA := legConfig(cfg, c.legs[0])
		k, err := newOwnKey(pick.Tag, pick.Suite, lcA, &st.sdes)
		if err != nil {
			return err
		}
		st.own[0] = k
	}
	if st.peer[0] != nil && st.peer[1] != nil && sameKey(st.peer[0], st.peer[1]) {
		return refuse("m= line %d: the offerer and the answerer use the same master key", n)
	}
	return nil
}

// update runs an offer or answer on an established call (a re-INVITE,
// or an answer repeated): the sender's address and key are updated, a
// changed key re-keys its leg, and the SDP toward the other side
// carries the gateway's current ports and key.
func (s *ngServer) update(c *ngCall, cmd, fromTag, toTag string, f *ngFlags, body *ng.SDP) ([]byte, error) {
	sender := -1
	switch {
	case cmd == "offer" && fromTag == c.tags[0]:
		sender = 0
	case cmd == "offer" && fromTag == c.tags[1]:
		sender = 1
	case cmd == "answer" && toTag == c.tags[1] && fromTag == c.tags[0]:
		sender = 1
	case cmd == "answer" && toTag == c.tags[0] && fromTag == c.tags[1]:
		sender = 0
	}
	if sender < 0 {
		return nil, refuse("the tags do not match this call")
	}
	if !c.answered {
		return s.reoffer(c, f, body)
	}
	if len(body.Media) != len(c.streams) {
		return nil, refuse("changing the number of m= lines is not supported")
	}
	cfg := s.g.cfg.Load()
	to := 1 - sender
	plans := make([]ng.MediaPlan, len(c.streams))
	for i, st := range c.streams {
		m := body.Media[i]
		if st.disabled || m.Port == 0 {
			continue
		}
		if err := s.updateStream(c, cfg, st, sender, m); err != nil {
			return nil, err
		}
		ctx, cancel := ngContext()
		info, err := s.g.Session(ctx, st.sid)
		cancel()
		if err != nil {
			return nil, refuse("m= line %d: the session ended", i+1)
		}
		plans[i] = st.plan(c, to, f.proto, info)
		if cmd == "offer" && st.dtls[to] {
			// A re-offer toward a DTLS side says actpass too, as
			// rtpengine: the peer's answer keeps or changes the roles.
			plans[i].Setup = "actpass"
		}
	}
	c.bundlePlans(plans, to)
	return body.Rewrite(plans, c.options(f, to))
}

// updateStream applies a sender's new address and key to its leg.
func (s *ngServer) updateStream(c *ngCall, cfg *Config, st *ngStream, sender int, m ng.Media) error {
	n := st.index + 1
	lid := c.legs[sender]
	st.pts = unionPTs(st.pts, m.PTs)
	if st.dtls[sender] {
		return s.updateDTLS(st, sender, lid, m)
	}
	var up LegUpdate
	remote := netip.AddrPortFrom(m.Addr, uint16(m.Port))
	if remote != st.remote[sender] {
		up.Remote = remote.String()
		st.remote[sender] = remote
	}
	if !st.mux[sender] {
		rtcp := netip.AddrPortFrom(m.Addr, uint16(m.RTCPPort))
		if rtcp != st.remoteRTCP[sender] || up.Remote != "" {
			up.RemoteRTCP = rtcp.String()
			st.remoteRTCP[sender] = rtcp
		}
	}
	var fresh *Crypto
	if !st.plain[sender] {
		cur := st.peer[sender]
		var pick *Crypto
		for _, line := range m.Crypto {
			cr, err := ParseCrypto(line)
			if err != nil || checkPeerCrypto(cr, legConfig(cfg, lid)) != nil {
				continue
			}
			if pick == nil || (cr.Suite == cur.Suite && pick.Suite != cur.Suite) {
				pick = cr
			}
		}
		if pick == nil {
			return refuse("m= line %d: no usable a=crypto line", n)
		}
		// The answer toward this side carries the tag it offered.
		if st.own[sender] != nil {
			st.own[sender].tag = pick.Tag
		}
		if !sameKey(pick, cur) || pick.Suite != cur.Suite {
			other := st.peer[1-sender]
			if other != nil && sameKey(pick, other) {
				return refuse("m= line %d: the offerer and the answerer use the same master key", n)
			}
			up.Crypto = pick.String()
			fresh = pick
		}
	}
	if up == (LegUpdate{}) {
		return nil
	}
	req := UpdateRequest{}
	if lid == legInternal {
		req.Internal = &up
	} else {
		req.Cloud = &up
	}
	ctx, cancel := ngContext()
	defer cancel()
	if _, err := s.g.Update(ctx, st.sid, req); err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			return refuse("m= line %d: %v", n, re.Err)
		}
		return refuse("m= line %d: %v", n, err)
	}
	if fresh != nil {
		st.peer[sender].Wipe()
		st.peer[sender] = fresh
	}
	return nil
}

// reoffer answers an offer repeated before the answer (a new cookie for
// the same INVITE): the same ports and keys, the offerer's address and
// lines as now sent.
func (s *ngServer) reoffer(c *ngCall, f *ngFlags, body *ng.SDP) ([]byte, error) {
	if len(body.Media) != len(c.streams) {
		return nil, refuse("changing the number of m= lines before the answer is not supported")
	}
	cfg := s.g.cfg.Load()
	plans := make([]ng.MediaPlan, len(c.streams))
	for i, st := range c.streams {
		m := body.Media[i]
		if st.disabled {
			continue
		}
		if !st.plain[0] && !st.dtls[0] {
			var cands []*Crypto
			for _, line := range m.Crypto {
				cr, err := ParseCrypto(line)
				if err == nil && checkPeerCrypto(cr, legConfig(cfg, c.legs[0])) == nil {
					cands = append(cands, cr)
				}
			}
			if len(cands) == 0 {
				return nil, refuse("m= line %d: no usable a=crypto line", i+1)
			}
			for _, cr := range st.cands {
				cr.Wipe()
			}
			st.cands = cands
		}
		if st.dtls[0] {
			st.peerFP[0], st.peerSetup[0], st.peerUfrag[0], st.peerTLSID[0] = m.Fingerprint, m.Setup, m.ICEUfrag, m.TLSID
		}
		st.remote[0], st.remoteRTCP[0] = remoteOf(st, 0, m)
		st.mux[0] = m.Mux || st.dtls[0]
		plans[i] = st.plan(c, 1, "", nil)
	}
	c.bundlePlans(plans, 1)
	return body.Rewrite(plans, c.options(f, 1))
}
