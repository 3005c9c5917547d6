package gateway

import (
	"encoding/binary"
)

// Re-key triggers, as events and metrics name them.
const (
	triggerAPI      = "api"
	triggerSchedule = "schedule"
	triggerPackets  = "packets"
	triggerLifetime = "lifetime"
)

// lifetimeHeadroom is the share of a key's lifetime left when the gateway
// announces the next key: at 90 % of the budget the next key is
// generated (event "rekeyed"), and it takes over after switch_delay or
// when the budget is spent, whichever comes first.
const lifetimeHeadroom = 10

// exhausted reports whether k has spent its packet budget.
func (k *keyState) exhausted() bool {
	return k.lifetime != 0 && (k.rtp >= k.lifetime || k.rtcp >= k.lifetime)
}

// outKey returns the key to protect the next packet on o with, switching
// to an announced key when its time has come or the current key is spent.
// Nil means the leg may not send (lifetime spent, policy "stop").
func (w *worker) outKey(o *leg) *keyState {
	if o.next != nil && (w.now >= o.switchAt || o.out.exhausted()) {
		w.switchOut(o)
	}
	if o.out.exhausted() {
		if w.legCfg(o.id).OnKeyExhausted != ExhaustRekey {
			return nil
		}
		if w.rekeyOut(o, triggerLifetime, true) != nil {
			return nil
		}
	}
	return o.out
}

// afterProtect applies the packet-count re-key policies after k protected
// a packet on o.
func (w *worker) afterProtect(o *leg, k *keyState) {
	// ng calls change SDES keys only by signalling (a re-INVITE), which
	// mediaedge cannot start: no scheduled re-keys there. A DTLS leg's
	// keys change only with a new handshake.
	if o.next != nil || o.s.ng.Load() != nil || o.dtls != nil {
		return
	}
	lc := w.legCfg(o.id)
	used := max(k.rtp, k.rtcp)
	switch {
	case k.lifetime != 0 && lc.OnKeyExhausted == ExhaustRekey && used >= k.lifetime-k.lifetime/lifetimeHeadroom:
		_ = w.rekeyOut(o, triggerLifetime, false)
	case lc.RekeyPackets != 0 && k.rtp >= lc.RekeyPackets:
		_ = w.rekeyOut(o, triggerPackets, false)
	}
}

// rekeyOut generates the next outbound key of o and announces it (event
// "rekeyed" with its a=crypto line). It takes over at once when now is
// set or switch_delay is 0, else after switch_delay. A key announced
// earlier and not yet in use is replaced.
func (w *worker) rekeyOut(o *leg, trigger string, now bool) *keyState {
	cur := o.out
	epoch := cur.epoch + 1
	if o.next != nil {
		epoch = o.next.epoch + 1
		o.next.wipe()
		o.next = nil
	}
	var mki []byte
	if o.useMKI {
		mki = mkiForEpoch(epoch)
	}
	mk, err := generateKey(cur.suite, o.lifetime, mki)
	if err != nil {
		w.g.log.Error("re-key failed: no randomness", "session", o.s.id, "leg", o.id.String(), "err", err)
		return nil
	}
	k := newKeyState(cur.suite, mk, epoch, 0)
	wipe(mk.Key)
	wipe(mk.Salt)
	k.unencSRTP, k.unencSRTCP = cur.unencSRTP, cur.unencSRTCP
	o.next = k
	delay := w.legCfg(o.id).SwitchDelay.D()
	if now {
		delay = 0
	}
	o.switchAt = w.now + int64(delay)
	w.g.metrics.rekeys.WithLabelValues(o.id.String(), trigger).Inc()
	at := w.wall.Add(delay)
	w.g.events.add(Event{Type: EventRekeyed, Session: o.s.id, Leg: o.id.String(), Reason: trigger,
		KeyEpoch: epoch, ActiveAt: &at}, k.crypto())
	if delay == 0 {
		w.switchOut(o)
	}
	return k
}

// mkiForEpoch is the 1-byte MKI of the gateway's key number epoch: 1 to
// 255, wrapping. Only the current and the next key are ever in use, so
// wrapping is harmless.
func mkiForEpoch(epoch uint32) []byte {
	return []byte{byte((epoch-1)%255 + 1)}
}

// switchOut makes the announced key o.next the current one. Under ROC
// policy "keep" the new context continues every stream's rollover counter
// exactly where the old key left it (RFC 3711 section 3.3.1): each known
// SSRC's ROC is set and its last sequence number replayed into the new
// context, so that a sequence number wrap right after the switch is still
// counted. Under "reset" the new key starts at ROC 0.
func (w *worker) switchOut(o *leg) {
	old, k := o.out, o.next
	ctx, err := k.context()
	if err != nil {
		return
	}
	if !o.rocReset && old.ctx != nil {
		for _, e := range o.outSSRC.e {
			roc, ok := old.ctx.ROC(e.ssrc)
			if !ok {
				continue
			}
			ctx.SetROC(e.ssrc, roc)
			var h [12]byte
			h[0] = 0x80
			binary.BigEndian.PutUint16(h[2:], e.lastSeq)
			binary.BigEndian.PutUint32(h[8:], e.ssrc)
			_, _ = ctx.EncryptRTP(w.scratch, h[:], &w.primeHdr)
		}
	}
	old.wipe()
	o.out, o.next = k, nil
	o.rekeyedAt = w.now
	w.g.events.add(Event{Type: EventKeySwitched, Session: o.s.id, Leg: o.id.String(), KeyEpoch: k.epoch}, nil)
}

// expireInbound drops the peer's superseded keys whose grace period is
// over.
func (w *worker) expireInbound(l *leg) {
	if len(l.in) < 2 {
		return
	}
	j := 0
	for _, k := range l.in {
		if k.expires != 0 && w.now >= k.expires {
			if l.inHint == k {
				l.inHint = nil
			}
			k.wipe()
			continue
		}
		l.in[j] = k
		j++
	}
	clear(l.in[j:])
	l.in = l.in[:j]
}

// setPeerKeys installs a new crypto line from the peer on l. The previous
// keys stay acceptable for rekey_grace, so that packets protected with
// them while signalling was in flight still pass; with MKIs the packet
// says which key it uses, without them the keys are tried in turn. Under
// ROC policy "keep" the new keys continue each known stream's rollover
// counter.
func (w *worker) setPeerKeys(l *leg, c *Crypto) {
	grace := int64(w.legCfg(l.id).RekeyGrace.D())
	prev := l.inHint
	if prev == nil && len(l.in) > 0 {
		prev = l.in[0]
	}
	for _, k := range l.in {
		if k.expires == 0 {
			k.expires = w.now + grace
			if grace == 0 {
				k.expires = w.now
			}
		}
	}
	l.inEpoch++
	w.trial.reconsider()
	fresh := make([]*keyState, 0, len(c.Keys)+len(l.in))
	for _, mk := range c.Keys {
		k := newKeyState(c.Suite, mk, l.inEpoch, w.replayWindow(l, c))
		k.unencSRTP, k.unencSRTCP = c.UnencryptedSRTP, c.UnencryptedSRTCP
		if !l.rocReset && prev != nil && prev.ctx != nil {
			if ctx, err := k.context(); err == nil {
				for _, e := range l.inSSRC.e {
					if roc, ok := prev.ctx.ROC(e.ssrc); ok {
						ctx.SetROC(e.ssrc, roc)
					}
				}
			}
		}
		fresh = append(fresh, k)
	}
	l.in = append(fresh, l.in...)
	l.inHint = fresh[0]
	w.expireInbound(l)
	// Too many keys in grace: keep the newest.
	for len(l.in) > maxKeyParams*3 {
		last := l.in[len(l.in)-1]
		last.wipe()
		l.in = l.in[:len(l.in)-1]
	}
}

// replayWindow is the leg's replay window, or the peer's WSH hint when it
// asks for more.
func (w *worker) replayWindow(l *leg, c *Crypto) int {
	return max(w.legCfg(l.id).ReplayWindow, c.WSH)
}

// housekeep runs about once a second on every session of the worker:
// idle timeout, scheduled re-keys, expired peer keys.
func (w *worker) housekeep() {
	idle := int64(w.cfg.IdleTimeout.D())
	for i := 0; i < len(w.sessions); i++ {
		s := w.sessions[i]
		if idle > 0 && w.now-s.lastAuth > idle {
			w.endSession(s, EndIdle)
			i-- // endSession moved the last session into slot i
			continue
		}
		for id := range s.legs {
			l := &s.legs[id]
			if d := l.dtls; d != nil && d.t != nil && !d.t.started && d.plan.role == DTLSActive {
				// An active handshake refused by max_handshakes tries
				// again.
				w.dtlsStart(d.t)
			}
			w.expireInbound(l)
			if l.plain || l.out == nil {
				continue
			}
			iv := int64(w.legCfg(l.id).RekeyInterval.D())
			if iv > 0 && l.next == nil && s.ng.Load() == nil && l.dtls == nil && w.now-l.rekeyedAt >= iv {
				_ = w.rekeyOut(l, triggerSchedule, false)
			}
			if l.next != nil && w.now >= l.switchAt {
				w.switchOut(l)
			}
		}
	}
}

// legCfg returns the current configuration of leg id.
func (w *worker) legCfg(id legID) *LegConfig {
	if id == legInternal {
		return &w.cfg.Internal
	}
	return &w.cfg.Cloud
}
