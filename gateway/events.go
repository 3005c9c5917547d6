package gateway

import (
	"context"
	"sync"
	"time"
)

// Event types.
const (
	// EventCreated: a session was created.
	EventCreated = "session_created"
	// EventEnded: a session ended; Reason says why.
	EventEnded = "session_ended"
	// EventLatched: a leg learned its remote address from an
	// authenticated packet.
	EventLatched = "latched"
	// EventRekeyed: the gateway generated a new outbound key for a leg;
	// Crypto carries its a=crypto line for the peer, ActiveAt when the
	// gateway starts using it.
	EventRekeyed = "rekeyed"
	// EventKeySwitched: the gateway now encrypts with key KeyEpoch.
	EventKeySwitched = "key_switched"
	// EventPeerKey: the peer's key on a leg was replaced through the API.
	EventPeerKey = "peer_key_changed"
	// EventDTLSDone: a DTLS leg's handshake completed and keyed the leg;
	// Reason names the negotiated profile, KeyEpoch counts the leg's
	// handshakes.
	EventDTLSDone = "dtls_handshake_done"
	// EventDTLSFailed: a DTLS leg's handshake failed; Reason says why
	// (fingerprint_mismatch, no_use_srtp, profile_not_allowed, timeout,
	// error).
	EventDTLSFailed = "dtls_handshake_failed"
)

// Reasons of EventEnded.
const (
	EndDeleted  = "deleted"
	EndIdle     = "idle_timeout"
	EndShutdown = "shutdown"
)

// Event is one entry of the gateway's event log, served by
// GET /v1/gateway/events.
type Event struct {
	Seq      uint64     `json:"seq"`
	Time     time.Time  `json:"time"`
	Type     string     `json:"type"`
	Session  string     `json:"session"`
	Leg      string     `json:"leg,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Remote   string     `json:"remote,omitempty"`
	KeyEpoch uint32     `json:"key_epoch,omitempty"`
	ActiveAt *time.Time `json:"active_at,omitempty"`
	// Crypto is the new a=crypto line of a rekeyed event: a key meant for
	// the peer, as the rekey API call returns it.
	Crypto string `json:"crypto,omitempty"`
}

// eventLogSize is how many events the log keeps.
const eventLogSize = 4096

// eventLog is a bounded, sequenced log of events with long-poll reads.
// It is safe for concurrent use. Key material in it (rekeyed events) is
// kept as bytes and wiped when the session ends.
type eventLog struct {
	mu      sync.Mutex
	ring    [eventLogSize]eventEntry
	next    uint64 // sequence number of the next event (first is 1)
	changed chan struct{}
}

type eventEntry struct {
	ev     Event
	crypto []byte
}

func newEventLog() *eventLog {
	return &eventLog{next: 1, changed: make(chan struct{})}
}

// add appends ev, with c's line when c is not nil. Time and ActiveAt are
// filled in.
func (e *eventLog) add(ev Event, c *Crypto) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.ActiveAt != nil && ev.ActiveAt.IsZero() {
		ev.ActiveAt = nil
	}
	e.mu.Lock()
	ev.Seq = e.next
	e.next++
	slot := &e.ring[ev.Seq%eventLogSize]
	wipe(slot.crypto)
	slot.ev, slot.crypto = ev, nil
	if c != nil {
		slot.crypto = []byte(c.String())
	}
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// scrub wipes the keys of session id's events. Most events carry no key,
// so the cheap test comes first: the scan runs under the log's lock at
// every session end.
func (e *eventLog) scrub(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.ring {
		if e.ring[i].crypto != nil && e.ring[i].ev.Session == id {
			wipe(e.ring[i].crypto)
			e.ring[i].crypto = nil
		}
	}
}

// since returns the events after seq (at most limit), waiting up to wait
// for one when there is none yet. next is the seq to ask for next time.
func (e *eventLog) since(ctx context.Context, seq uint64, limit int, wait time.Duration) (evs []Event, next uint64) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		first := seq + 1
		if oldest := e.oldest(); first < oldest {
			first = oldest
		}
		for s := first; s < e.next && len(evs) < limit; s++ {
			ent := &e.ring[s%eventLogSize]
			ev := ent.ev
			if ent.crypto != nil {
				ev.Crypto = string(ent.crypto)
			}
			evs = append(evs, ev)
		}
		next = e.next - 1
		if len(evs) > 0 {
			next = evs[len(evs)-1].Seq
		}
		ch := e.changed
		e.mu.Unlock()
		if len(evs) > 0 || wait <= 0 {
			return evs, next
		}
		select {
		case <-ch:
		case <-deadline.C:
			return nil, next
		case <-ctx.Done():
			return nil, next
		}
	}
}

func (e *eventLog) oldest() uint64 {
	if e.next > eventLogSize {
		return e.next - eventLogSize
	}
	return 1
}
