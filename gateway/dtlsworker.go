package gateway

import (
	"errors"
	"net/netip"
	"strconv"
)

// The worker's side of DTLS legs: record intake, the handshake's sends,
// its result, and the end of a transport. Everything here runs on the
// worker that owns the legs.

// post queues fn to run on the worker's goroutine without waiting for it.
// It reports false when the worker is stopping (fn will not run). Safe
// for concurrent use.
func (w *worker) post(fn func()) bool {
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		return false
	}
	w.cmds = append(w.cmds, fn)
	w.mu.Unlock()
	w.sys.wake()
	return true
}

// dtlsAttach gives DTLS leg l its transport, when it has none, and
// starts an active handshake whose peer is known. Called when the
// session joins the worker and after a re-key.
func (w *worker) dtlsAttach(l *leg) {
	d := l.dtls
	if d == nil || d.t != nil {
		return
	}
	if d.plan.cert == nil {
		p := *d.plan
		p.cert = w.g.dtlsCert.Load()
		d.plan = &p
	}
	d.t = w.newDTLSTransport(l)
	if d.plan.role == DTLSActive {
		w.dtlsStart(d.t)
	}
}

// dtlsStart starts t's handshake when it can: not yet started, the
// peer's fingerprint known, a destination known (active), and a slot
// free under gateway.dtls.max_handshakes. It reports whether the
// handshake runs.
func (w *worker) dtlsStart(t *dtlsTransport) bool {
	if t.started || t.stopped {
		return t.started
	}
	if len(t.plan.peerFP) == 0 {
		return false
	}
	if t.plan.role == DTLSActive && !w.dtlsDest(t).IsValid() {
		return false
	}
	if n := t.g.dtlsActive.Add(1); n > int64(w.cfg.DTLS.MaxHandshakes) {
		t.g.dtlsActive.Add(-1)
		t.g.metrics.dtlsHandshakes.WithLabelValues(dtlsLimit).Inc()
		return false
	}
	t.started = true
	t.state = DTLSStateConnecting
	t.g.dtlsWG.Add(1)
	go t.run()
	return true
}

// dtlsDest is where t's records go: the leg's remote (given, or latched
// by ICE), else where the peer's records came from.
func (w *worker) dtlsDest(t *dtlsTransport) netip.AddrPort {
	if len(t.legs) > 0 && t.legs[0].remote.IsValid() {
		return t.legs[0].remote
	}
	return t.src
}

// dtlsIntake takes a DTLS record (first byte 20-63, RFC 7983) that
// arrived on DTLS leg l's socket from src and queues it for the leg's
// handshake. It never blocks: a full queue drops and counts.
func (w *worker) dtlsIntake(l *leg, src netip.AddrPort, pkt []byte) {
	d := l.dtls
	t := d.t
	if t == nil || t.stopped || t.state == DTLSStateFailed || len(t.plan.peerFP) == 0 {
		// No handshake: none wanted any more, or the peer's fingerprint
		// is not known yet (an update brings it).
		w.drop(l, reasonDTLSRefused)
		return
	}
	if want := l.remote; want.IsValid() {
		if want != src && (l.symmetric || l.ice != nil) {
			w.drop(l, reasonWrongSource)
			return
		}
	} else if l.ice != nil && !l.iceVerified(src) {
		// With ICE, DTLS comes over a checked candidate pair: a record
		// from a source that never passed a check cannot take over the
		// handshake before the peer's nomination.
		w.drop(l, reasonWrongSource)
		return
	}
	if t.plan.role == DTLSPassive && t.state != DTLSStateFailed && checkClientHello(pkt, t.plan.profiles) == helloOK {
		r := helloRandom(pkt)
		switch {
		case !t.hasHello:
			// The ClientHello of this association (its retransmissions
			// and the one after a HelloVerifyRequest carry the same
			// random).
			t.hello, t.hasHello = r, true
		case r != t.hello && (t.state == DTLSStateConnected || t.state == DTLSStateClosed):
			// A new ClientHello on an established (or peer-closed)
			// association: the peer starts a new one, as a browser may
			// after an ICE restart (RFC 8842). The keys of the old one
			// stay until it completes.
			w.dtlsRekey(l, &dtlsPlan{role: t.plan.role, peerFP: t.plan.peerFP, profiles: t.plan.profiles, cert: t.plan.cert})
			if t = l.dtls.t; t == nil || t.stopped {
				w.drop(l, reasonDTLSRefused)
				return
			}
			t.hello, t.hasHello = r, true
		}
	}
	if !t.started {
		if t.plan.role == DTLSPassive {
			// A passive leg starts its handshake with the peer's
			// ClientHello; anything else before it is noise.
			switch checkClientHello(pkt, t.plan.profiles) {
			case helloOK, helloPartial:
			case helloNotHello:
				w.drop(l, reasonDTLSRefused)
				return
			case helloNoSRTP:
				w.dtlsRefuse(l, t, src, dtlsNoSRTP, alertHandshakeFailure)
				return
			case helloNoProfile:
				w.dtlsRefuse(l, t, src, dtlsProfileRefused, alertInsufficientSecurity)
				return
			}
		}
		if !t.src.IsValid() {
			t.src = src
		}
		if !w.dtlsStart(t) {
			w.drop(l, reasonDTLSBusy)
			return
		}
	}
	if !t.src.IsValid() {
		t.src = src
	}
	if len(t.pc.in) == cap(t.pc.in) {
		w.drop(l, reasonDTLSQueue)
		return
	}
	// Handshake records are few; a copy per record is fine here, and
	// never happens once the queue is full.
	b := append([]byte(nil), pkt...)
	select {
	case t.pc.in <- b:
	default:
		w.drop(l, reasonDTLSQueue)
	}
}

// dtlsRefuse refuses a ClientHello: the leg's handshake fails with why,
// and the peer gets a fatal alert (RFC 5246 section 7.2) so that it does
// not wait for its own timeout.
func (w *worker) dtlsRefuse(l *leg, t *dtlsTransport, src netip.AddrPort, why string, desc byte) {
	w.dtlsFail(t, why)
	w.drop(l, reasonDTLSRefused)
	rec := fatalAlert(desc)
	_ = sendDatagram(l.rtp, rec[:], src)
}

// dtlsSend sends a record t's handshake wrote.
func (w *worker) dtlsSend(t *dtlsTransport, b []byte) {
	if t.stopped || len(t.legs) == 0 {
		return
	}
	l := t.legs[0]
	dst := w.dtlsDest(t)
	if !dst.IsValid() || l.rtp == nil {
		w.drop(l, reasonNoRemote)
		return
	}
	if err := sendDatagram(l.rtp, b, dst); err != nil {
		w.drop(l, reasonSendError)
	}
}

// dtlsFinished applies a handshake's result: on success the exported
// keys become the inbound (peer) and outbound (gateway) keys of every leg
// t keys; nothing of them reaches any other leg.
func (w *worker) dtlsFinished(t *dtlsTransport, res *dtlsResult) {
	defer res.wipe()
	if t.stopped {
		return
	}
	if res.reason != "" {
		w.dtlsFail(t, res.reason)
		return
	}
	t.state = DTLSStateConnected
	t.profile = res.profile
	t.g.metrics.dtlsHandshakes.WithLabelValues(dtlsOK).Inc()
	for _, l := range t.legs {
		d := l.dtls
		d.handshakes++
		w.installDTLSKeys(l, res)
		if !l.remote.IsValid() && t.src.IsValid() {
			// The handshake authenticated the peer (its fingerprint): its
			// address is the leg's from now on.
			l.remote, l.remoteRTCP, l.latched = t.src, t.src, true
			w.latched(l, t.src, false)
		}
		t.g.events.add(Event{Type: EventDTLSDone, Session: l.s.id, Leg: l.id.String(),
			KeyEpoch: d.handshakes, Reason: res.profile.name}, nil)
	}
}

// installDTLSKeys makes res's keys l's: the peer's previous key stays
// acceptable for the leg's rekey_grace (a re-handshake), the gateway's
// previous key is replaced at once.
func (w *worker) installDTLSKeys(l *leg, res *dtlsResult) {
	grace := int64(w.legCfg(l.id).RekeyGrace.D())
	for _, k := range l.in {
		if k.expires == 0 {
			k.expires = w.now + grace
		}
	}
	epoch := l.dtls.handshakes
	suite := res.profile.suite
	in := newKeyState(suite, res.peer, epoch, w.legCfg(l.id).ReplayWindow)
	l.in = append([]*keyState{in}, l.in...)
	l.inHint = in
	l.inEpoch = epoch
	w.expireInbound(l)
	if l.out != nil {
		l.out.wipe()
	}
	if l.next != nil {
		l.next.wipe()
		l.next = nil
	}
	l.out = newKeyState(suite, res.local, epoch, 0)
	l.rekeyedAt = w.now
	l.plain = false
}

// dtlsPeerClosed records that the peer closed t's association after the
// handshake (close_notify or a fatal alert). The leg keeps its keys: the
// session ends by the API, idle timeout or a re-key.
func (w *worker) dtlsPeerClosed(t *dtlsTransport) {
	if !t.stopped && t.state == DTLSStateConnected {
		t.state = DTLSStateClosed
	}
}

// dtlsFail marks t's handshake failed, counts it and reports it.
func (w *worker) dtlsFail(t *dtlsTransport, why string) {
	if t.state == DTLSStateFailed {
		return
	}
	t.state, t.reason = DTLSStateFailed, why
	t.g.metrics.dtlsHandshakes.WithLabelValues(why).Inc()
	for _, l := range t.legs {
		t.g.events.add(Event{Type: EventDTLSFailed, Session: l.s.id, Leg: l.id.String(), Reason: why}, nil)
	}
	if len(t.legs) > 0 {
		w.g.log.Info("DTLS handshake failed", "session", t.legs[0].s.id, "leg", t.legs[0].id.String(), "reason", why)
	}
	// The goroutine (if any) ends on its own; a failed transport takes
	// no more records.
	t.stop()
}

// dtlsDetach takes l off its transport; the transport stops when no leg
// uses it any more.
func (w *worker) dtlsDetach(l *leg) {
	d := l.dtls
	if d == nil || d.t == nil {
		return
	}
	t := d.t
	d.t = nil
	for i, x := range t.legs {
		if x == l {
			t.legs = append(t.legs[:i], t.legs[i+1:]...)
			break
		}
	}
	if len(t.legs) == 0 {
		t.stopped = true
		t.state = DTLSStateClosed
		t.stop()
	}
}

// dtlsRekey replaces DTLS leg l's transport with a new handshake under
// plan (a new fingerprint, role or ICE restart). The keys of the last
// handshake stay in use until the new one completes.
func (w *worker) dtlsRekey(l *leg, plan *dtlsPlan) {
	w.dtlsDetach(l)
	l.dtls.plan = plan
	w.dtlsAttach(l)
}

// dtlsInfo describes DTLS leg l for session info.
func (w *worker) dtlsInfo(l *leg, keys bool) *DTLSInfo {
	d := l.dtls
	fp := w.g.DTLSFingerprint()
	if d.plan.cert != nil {
		fp = d.plan.cert.fp
	}
	di := &DTLSInfo{Fingerprint: fp, Setup: d.plan.role, State: DTLSStateNew,
		PeerFingerprints: d.plan.peerFP, Handshakes: d.handshakes}
	if di.PeerFingerprints == nil {
		di.PeerFingerprints = []Fingerprint{}
	}
	if t := d.t; t != nil {
		di.Fingerprint = t.cert.fp
		di.State, di.Reason = t.state, t.reason
		if t.profile != nil {
			di.Profile = t.profile.name
		}
		di.PeerFingerprint = t.matched.Load()
	}
	if l.ice != nil {
		ii := &ICEInfo{Ufrag: l.ice.ufrag, Candidates: []string{}}
		if keys {
			ii.Pwd = l.ice.pwd
		}
		if l.rtp != nil {
			ii.Candidates = append(ii.Candidates, hostCandidate(l.rtp.local))
		}
		di.ICE = ii
	}
	return di
}

// hostCandidate is the a=candidate value of a host candidate on local
// (RFC 8839), component 1: with rtcp-mux there is no other.
func hostCandidate(local netip.AddrPort) string {
	return "1 1 udp 2130706431 " + local.Addr().String() + " " + strconv.Itoa(int(local.Port())) + " typ host"
}

// dtlsUpdate re-keys DTLS leg l after a re-offer: a new handshake with
// the peer's new fingerprint (empty: the current ones), a=setup (empty:
// the current role) and, with iceRestart, new ICE credentials.
func (w *worker) dtlsUpdate(l *leg, fingerprint, setup string, iceRestart bool) error {
	old := l.dtls.plan
	plan := &dtlsPlan{role: old.role, peerFP: old.peerFP, profiles: old.profiles, cert: old.cert}
	if setup != "" {
		role, err := answerSetup(setup, DTLSRole(w.cfg.DTLS.Setup))
		if err != nil {
			return err
		}
		plan.role = role
	}
	if fingerprint != "" {
		fp, err := ParseFingerprint(fingerprint)
		if err != nil {
			return err
		}
		plan.peerFP = []Fingerprint{fp}
	}
	if iceRestart {
		if l.ice == nil {
			return errors.New("the leg has no ICE (no_ice)")
		}
		ic, err := newICECreds()
		if err != nil {
			return err
		}
		l.ice = ic
		l.iceFrom, l.iceNext = [4]netip.AddrPort{}, 0
		if fingerprint == "" && setup == "" {
			// An ICE restart alone keeps the DTLS association, as
			// browsers do (RFC 8842); a peer that starts a new one
			// anyway is answered (dtlsIntake).
			return nil
		}
	}
	w.dtlsRekey(l, plan)
	return nil
}
