package gateway

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// ngCall is one call driven over ng: the offerer (side 0, its from-tag)
// and the answerer (side 1, the to-tag of the answer), mapped to the
// gateway's legs by the direction flag, and one stream per m= line, each
// a gateway session once answered. Guarded by ngServer.mu.
type ngCall struct {
	id         string
	key        string // in ngServer.calls: id, or forkKey(id, viaBranch)
	tags       [2]string
	viaBranch  string
	legs       [2]legID // by side
	created    time.Time
	lastSignal time.Time
	answered   bool
	deleteAt   time.Time // a delayed delete; zero: none
	streams    []*ngStream
	// cert is the gateway's DTLS certificate when the first offer came:
	// its fingerprint is what the SDP toward a DTLS side announces, and
	// the call's DTLS legs handshake with it, even after a reload changed
	// gateway.dtls.certificate before the answer.
	cert *dtlsCert
	// bundle are the mids of each side's a=group:BUNDLE (nil: none):
	// those streams share one transport on that side (ngbundle.go).
	bundle [2][]string
	// others are the to-tags of earlier answers of a forked INVITE that
	// no longer carry the media (forkAnswer).
	others []string
}

// ngStream is one m= line of an ng call. Arrays indexed [2] are by side
// unless named by leg.
type ngStream struct {
	index    int
	typ      string
	disabled bool   // port 0 in the offer or the answer: nothing allocated
	sid      string // the gateway session once answered

	// Until answered the stream holds its sockets (by leg id).
	socks [2]ngSocks
	w     *worker // shared port mode: the worker whose sockets they are

	proto              [2]string
	plain              [2]bool
	remote, remoteRTCP [2]netip.AddrPort
	mux                [2]bool
	muxOffered         bool    // the offer toward side 1 carries a=rtcp-mux
	muxOnly            bool    // rtcp-mux require
	sdes               ngFlags // the offer's SDES pad and lifetime, for the keys of the answer
	// cands are the offerer's usable a=crypto lines until the answer
	// picks one; peer is each side's key in use.
	cands []*Crypto
	peer  [2]*Crypto
	// offered are the gateway's keys offered toward side 1, one per
	// suite; own is the gateway's key toward each side once chosen.
	offered []*ownKey
	own     [2]*ownKey
	// ice are the ICE-lite credentials toward each side (ICE: force).
	ice [2]*iceCreds

	// DTLS-SRTP (RFC 5763) by side: dtls makes the side's leg keyed by a
	// handshake instead of a=crypto; peerFP, peerSetup and peerUfrag are
	// what the side's SDP said (a change re-keys the leg); role is the
	// gateway's a=setup toward the side once known; pref is the role
	// taken toward a peer that offers actpass (the DTLS flag).
	dtls      [2]bool
	peerFP    [2]string
	peerSetup [2]string
	peerUfrag [2]string
	peerTLSID [2]string
	role      [2]DTLSRole
	pref      DTLSRole
	// BUNDLE (ngbundle.go) by side: via is the stream whose transport
	// this stream's leg on that side uses (nil: its own); mid the a=mid
	// written toward the side ("": the sender's); pts the payload types
	// of the m= line, which route a bundled transport's packets to it.
	via [2]*ngStream
	mid [2]string
	pts []uint8
	// bundled and bmid: the stream is in side's BUNDLE group, by that mid.
	bundled [2]bool
	bmid    [2]string
	// sess is the gateway session once answered (ngsession.go).
	sess *session
}

type ngSocks struct{ rtp, rtcp *sock }

// ownKey is a key of the gateway's toward one side, as announced.
type ownKey struct {
	tag   uint32
	suite *Suite
	mk    MasterKey
	pad   bool
}

// line formats the a=crypto value (secret: it holds the key).
func (k *ownKey) line() string {
	raw := make([]byte, 0, len(k.mk.Key)+len(k.mk.Salt))
	raw = append(append(raw, k.mk.Key...), k.mk.Salt...)
	b64 := base64.StdEncoding.EncodeToString(raw)
	wipe(raw)
	if !k.pad {
		b64 = strings.TrimRight(b64, "=")
	}
	s := fmt.Sprintf("%d %s inline:%s", k.tag, k.suite.Name, b64)
	if k.mk.Lifetime != 0 {
		s += "|" + formatLifetime(k.mk.Lifetime)
	}
	return s
}

func (k *ownKey) wipe() {
	if k != nil {
		wipe(k.mk.Key)
		wipe(k.mk.Salt)
	}
}

// newOwnKey makes a fresh key of suite for a leg configured by lc.
func newOwnKey(tag uint32, su *Suite, lc *LegConfig, f *ngFlags) (*ownKey, error) {
	lifetime := lc.KeyLifetime
	if lifetime == 0 && f.sdesLifetime {
		lifetime = 1 << 31
	}
	mk, err := generateKey(su, lifetime, nil)
	if err != nil {
		return nil, err
	}
	return &ownKey{tag: tag, suite: su, mk: mk, pad: f.sdesPad}, nil
}

// offerAnswer runs an offer or an answer. Locked: s.mu is held.
func (s *ngServer) offerAnswer(cmd string, req ng.Dict, now time.Time) map[string]any {
	callID, fromTag, toTag := req.Str("call-id"), req.Str("from-tag"), req.Str("to-tag")
	switch {
	case callID == "":
		return ng.ErrorReply("no call-id")
	case fromTag == "":
		return ng.ErrorReply("no from-tag")
	case !req.Has("sdp"):
		return ng.ErrorReply("no sdp")
	}
	flags, err := parseNGFlags(req)
	if err != nil {
		return ng.ErrorReply(err.Error())
	}
	body, err := ng.ParseSDP([]byte(req.Str("sdp")))
	if err != nil {
		return ng.ErrorReply(err.Error())
	}
	inheritBundle(body)
	via := req.Str("via-branch")
	c := s.branch(callID, via)
	key := callID
	if h := s.calls[callID]; cmd == "offer" && c == h && h != nil && !h.answered &&
		via != "" && h.viaBranch != "" && via != h.viaBranch && fromTag == h.tags[0] {
		// The same INVITE forked: a call of its own, with its own ports
		// and keys toward its answerer.
		c, key = nil, forkKey(callID, via)
	}
	var out []byte
	switch {
	case cmd == "offer" && c == nil && s.g.draining.Load():
		// A new call while draining (mediaedge drain): the proxy should
		// send it to another media node. Re-offers and answers of live
		// calls go on.
		s.g.metrics.refused.WithLabelValues("draining").Inc()
		return ng.ErrorReply("draining: new calls are refused")
	case cmd == "offer" && c == nil:
		c, out, err = s.newOffer(callID, fromTag, via, flags, body, now)
		if err == nil {
			c.key = key
			s.calls[key] = c
			if key != callID {
				s.forks[callID] = append(s.forks[callID], key)
			}
			s.pending += len(c.streams)
			s.totals.calls++
			s.m.calls.Set(float64(len(s.calls)))
		}
	case c == nil:
		return ng.ErrorReply("unknown call-id")
	case !c.deleteAt.IsZero():
		return ng.ErrorReply("the call is being deleted")
	case cmd == "answer" && !c.answered:
		if fromTag != c.tags[0] {
			return ng.ErrorReply("unknown from-tag for this call")
		}
		out, err = s.answer(c, toTag, flags, body)
		if err != nil {
			s.forgetLocked(c)
		}
	case cmd == "answer" && fromTag == c.tags[0] && toTag != "" && toTag != c.tags[1]:
		out, err = s.forkAnswer(c, toTag, flags, body)
	default:
		out, err = s.update(c, cmd, fromTag, toTag, flags, body)
	}
	if err != nil {
		return ng.ErrorReply(err.Error())
	}
	if cmd == "offer" {
		s.totals.offers++
	} else {
		s.totals.answers++
	}
	c.lastSignal = now
	return map[string]any{"result": "ok", "sdp": out}
}

// newOffer sets up a call from its first offer: both legs' sockets, the
// gateway's keys toward the answerer, and the SDP toward it.
func (s *ngServer) newOffer(callID, fromTag, via string, f *ngFlags, body *ng.SDP, now time.Time) (*ngCall, []byte, error) {
	cfg := s.g.cfg.Load()
	dir := f.direction
	if len(dir) == 0 {
		dir = cfg.NG.DefaultDirection
	}
	legs, err := cfg.NG.legsFor(dir)
	if err != nil {
		return nil, nil, refuse("direction %q: %v", clip(strings.Join(dir, ",")), err)
	}
	if err := s.checkRoomLocked(cfg, len(body.Media)); err != nil {
		return nil, nil, err
	}
	c := &ngCall{id: callID, tags: [2]string{fromTag}, viaBranch: via, legs: legs, created: now,
		cert: s.g.dtlsCert.Load()}
	plans := make([]ng.MediaPlan, len(body.Media))
	usable := 0
	for i, m := range body.Media {
		st, plan, err := s.offerStream(c, cfg, i, m, f)
		if st != nil {
			c.streams = append(c.streams, st)
		}
		if err != nil {
			s.freeCallLocked(c)
			return nil, nil, err
		}
		plans[i] = plan
		if !st.disabled {
			usable++
		}
	}
	if usable == 0 {
		s.freeCallLocked(c)
		return nil, nil, refuse("the SDP has no usable media")
	}
	// BUNDLE: the offerer's group on its side, and every DTLS m= line
	// toward a DTLS answerer on one transport.
	s.bundleSide(c, 0, func(i int) bool { return body.Media[i].Bundled }, func(i int) string { return body.Media[i].Mid })
	s.bundleSide(c, 1, func(int) bool { return true }, func(i int) string { return body.Media[i].Mid })
	for i, st := range c.streams {
		if !st.disabled {
			plans[i] = st.plan(c, 1, "", nil)
		}
	}
	c.bundlePlans(plans, 1)
	out, err := body.Rewrite(plans, c.options(f, 1))
	if err != nil {
		s.freeCallLocked(c)
		return nil, nil, err
	}
	return c, out, nil
}

// checkRoomLocked refuses a call that would take the gateway past
// max_sessions, counting offered streams not yet answered.
func (s *ngServer) checkRoomLocked(cfg *Config, streams int) error {
	s.g.mu.Lock()
	n, running := len(s.g.sessions), s.g.state == "running"
	s.g.mu.Unlock()
	if !running {
		return refuse("the gateway is not running")
	}
	if n+s.pending+streams > cfg.MaxSessions {
		return refuse("too many sessions (max_sessions %d)", cfg.MaxSessions)
	}
	return nil
}

// offerStream plans one m= line of a first offer.
func (s *ngServer) offerStream(c *ngCall, cfg *Config, i int, m ng.Media, f *ngFlags) (*ngStream, ng.MediaPlan, error) {
	st := &ngStream{index: i, typ: m.Type}
	if m.Port == 0 && !m.BundleOnly {
		st.disabled = true
		return st, ng.MediaPlan{}, nil
	}
	n := i + 1
	lcA, lcB := legConfig(cfg, c.legs[0]), legConfig(cfg, c.legs[1])
	if !ng.ValidProto(m.Proto) {
		return st, ng.MediaPlan{}, refuse("m= line %d: transport %q is not supported", n, clip(m.Proto))
	}
	st.proto[0] = m.Proto
	st.pts = m.PTs
	st.mid[0] = m.Mid // an answer echoes the offer's mids (RFC 5888)
	st.pref = dtlsPref(cfg, f)
	switch {
	case m.DTLS && (!f.dtlsOff || len(m.Crypto) == 0):
		// As rtpengine: DTLS off on an offer is about the SDP toward the
		// answerer; the offerer's own DTLS is refused only when it also
		// offers a=crypto to fall back on.
		if err := st.takeDTLS(cfg, 0, m); err != nil {
			return st, ng.MediaPlan{}, err
		}
	case ng.Secure(m.Proto) || len(m.Crypto) > 0:
		for _, line := range m.Crypto {
			cr, err := ParseCrypto(line)
			if err != nil {
				continue
			}
			if checkPeerCrypto(cr, lcA) != nil {
				cr.Wipe()
				continue
			}
			st.cands = append(st.cands, cr)
		}
		if len(st.cands) == 0 {
			return st, ng.MediaPlan{}, refuse("m= line %d: no usable a=crypto line (the %s leg allows %s)",
				n, c.legs[0], strings.Join(lcA.Suites, ", "))
		}
	default:
		if !lcA.AllowPlain {
			return st, ng.MediaPlan{}, refuse("m= line %d: plain RTP from the offerer, and the %s leg does not allow it", n, c.legs[0])
		}
		st.plain[0] = true
	}
	out := m.Proto
	if f.proto != "" {
		out = f.proto
	}
	if f.dtlsOff {
		out = strings.TrimPrefix(out, "UDP/TLS/")
	}
	if f.sdesOff && !ng.OverDTLS(out) {
		out = strings.Replace(out, "SAVP", "AVP", 1)
	}
	st.proto[1] = out
	switch {
	case ng.OverDTLS(out):
		// Toward a DTLS-SRTP answerer: the gateway's fingerprint and
		// a=setup:actpass, no a=crypto; one port for RTP and RTCP.
		if cfg.NG.PortMode != PortsDedicated {
			return st, ng.MediaPlan{}, refuse("m= line %d: DTLS-SRTP needs gateway.ng.port_mode dedicated", n)
		}
		st.dtls[1] = true
	case ng.Secure(out):
		var order []*Suite
		for _, cr := range st.cands {
			if !slices.Contains(order, cr.Suite) {
				order = append(order, cr.Suite)
			}
		}
		for _, name := range lcB.Suites {
			if su := LookupSuite(name); su != nil && !slices.Contains(order, su) {
				order = append(order, su)
			}
		}
		for _, su := range order {
			if !lcB.allows(su) || !f.suiteOK(su) {
				continue
			}
			k, err := newOwnKey(uint32(len(st.offered)+1), su, lcB, f)
			if err != nil {
				return st, ng.MediaPlan{}, err
			}
			st.offered = append(st.offered, k)
		}
		if len(st.offered) == 0 {
			return st, ng.MediaPlan{}, refuse("m= line %d: no crypto suite left to offer on the %s leg", n, c.legs[1])
		}
	default:
		if !lcB.AllowPlain {
			return st, ng.MediaPlan{}, refuse("m= line %d: plain RTP toward the answerer, and the %s leg does not allow it", n, c.legs[1])
		}
		st.plain[1] = true
	}
	st.remote[0], st.remoteRTCP[0] = remoteOf(st, 0, m)
	st.mux[0] = m.Mux || st.dtls[0]
	st.sdes = ngFlags{sdesPad: f.sdesPad, sdesLifetime: f.sdesLifetime}
	st.muxOffered = (m.Mux && !f.muxDemux) || f.muxOffer || f.muxRequire || st.dtls[1]
	st.muxOnly = f.muxRequire || st.dtls[1]
	// address-family: the address the answerer is given.
	if a, err := lcB.bindAddr(); err != nil {
		return st, ng.MediaPlan{}, err
	} else if err := f.checkFamily(a); err != nil {
		return st, ng.MediaPlan{}, refuse("%v", err)
	}
	if f.iceForce || lcB.ICELite {
		if cfg.NG.PortMode != PortsDedicated {
			return st, ng.MediaPlan{}, refuse("ICE force needs gateway.ng.port_mode dedicated")
		}
		ic, err := newICECreds()
		if err != nil {
			return st, ng.MediaPlan{}, err
		}
		st.ice[1] = ic
	}
	if err := s.bindStream(st, c, cfg); err != nil {
		return st, ng.MediaPlan{}, refuse("m= line %d: %v", n, err)
	}
	return st, st.plan(c, 1, "", nil), nil
}

// bindStream gives a stream its sockets on both legs: a dedicated pair
// each, or the shared sockets of a worker.
func (s *ngServer) bindStream(st *ngStream, c *ngCall, cfg *Config) error {
	g := s.g
	if cfg.NG.PortMode == PortsShared {
		w, err := g.pickWorker()
		if err != nil {
			return err
		}
		st.w = w
		for id := range st.socks {
			st.socks[id] = ngSocks{rtp: w.shared[id].rtp, rtcp: w.shared[id].rtcp}
		}
		return nil
	}
	for _, id := range c.legs {
		rtp, rtcp, err := g.bindPair(legConfig(cfg, id), id)
		if err != nil {
			return err
		}
		st.socks[id] = ngSocks{rtp: rtp, rtcp: rtcp}
	}
	return nil
}

// pickWorker returns the next worker, round robin.
func (g *Gateway) pickWorker() (*worker, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != "running" || len(g.workers) == 0 {
		return nil, ErrClosed
	}
	w := g.workers[g.rr%len(g.workers)]
	g.rr++
	return w, nil
}

// forgetLocked frees c and drops it from the calls.
func (s *ngServer) forgetLocked(c *ngCall) {
	s.freeCallLocked(c)
	if !c.answered {
		s.pending -= len(c.streams)
	}
	delete(s.calls, c.key)
	if c.key != c.id {
		ks := slices.DeleteFunc(s.forks[c.id], func(k string) bool { return k == c.key })
		if len(ks) == 0 {
			delete(s.forks, c.id)
		} else {
			s.forks[c.id] = ks
		}
	}
	s.m.calls.Set(float64(len(s.calls)))
}

// forkKey is the key in ngServer.calls of a fork of call id: an offer
// with the same call-id and from-tag as an unanswered call but another
// via-branch.
func forkKey(id, via string) string { return id + "\x00" + via }

// branch returns the call a request of call id and via-branch via is
// for: the fork of that via-branch when there is one, else the call of
// that call-id (nil when none).
func (s *ngServer) branch(id, via string) *ngCall {
	if via != "" && len(s.forks[id]) > 0 {
		if c := s.calls[forkKey(id, via)]; c != nil {
			return c
		}
	}
	return s.calls[id]
}

// branches returns every call of call id: the first offer's, then its
// forks.
func (s *ngServer) branches(id string) []*ngCall {
	var cs []*ngCall
	if c := s.calls[id]; c != nil {
		cs = append(cs, c)
	}
	for _, k := range s.forks[id] {
		cs = append(cs, s.calls[k])
	}
	return cs
}

// freeCallLocked ends every stream of c: sessions deleted, held sockets
// closed, keys wiped.
func (s *ngServer) freeCallLocked(c *ngCall) {
	for _, st := range c.streams {
		s.freeStream(st)
	}
}

func (s *ngServer) freeStream(st *ngStream) {
	if st.sid != "" {
		ctx, cancel := ngContext()
		_ = s.g.Delete(ctx, st.sid)
		cancel()
		st.sid = ""
	} else if st.sess != nil {
		s.g.abandon(st.sess, true) // built, never installed
	}
	st.sess = nil
	for id := range st.socks {
		so := st.socks[id]
		if so.rtp != nil && so.rtp.dm == nil {
			s.g.closeSock(so.rtp)
		}
		if so.rtcp != nil && so.rtcp != so.rtp && so.rtcp.dm == nil {
			s.g.closeSock(so.rtcp)
		}
		st.socks[id] = ngSocks{}
	}
	for _, k := range st.offered {
		k.wipe()
	}
	st.own[0].wipe()
	st.own[1].wipe()
	for _, cr := range append(st.cands, st.peer[0], st.peer[1]) {
		if cr != nil {
			cr.Wipe()
		}
	}
	st.offered, st.cands = nil, nil
	st.disabled = true
}
