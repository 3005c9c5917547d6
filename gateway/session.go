package gateway

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// legID names a leg.
type legID uint8

const (
	legInternal legID = iota
	legCloud
)

func (l legID) String() string {
	if l == legInternal {
		return "internal"
	}
	return "cloud"
}

func (l legID) other() legID { return 1 - l }

// session is one call through the gateway: two legs, each with its own
// keys. Everything below "owned by the worker" is read and written only
// by the worker goroutine that owns the session (w); the control API
// reaches it through worker commands.
type session struct {
	// set at creation, never changed
	id      string
	created time.Time
	w       *worker

	// ng is the ng call the session carries a stream of; nil for API
	// sessions. Stored before the session is installed; a forked answer
	// that takes the media stores a new one (ngRetag). A stored NGInfo
	// is never changed.
	ng atomic.Pointer[NGInfo]

	// owned by the worker
	legs     [2]leg
	lastAuth int64 // monotonic ns of the last authenticated packet
	added    bool  // registered with the worker
	ended    bool
	// idx is the session's position in w.sessions.
	idx int
}

// leg is one side of a session. Owned by the session's worker.
type leg struct {
	s  *session
	id legID

	// sockets: rtcp == rtp with rtcp-mux. Dedicated sockets belong to this
	// leg alone; shared sockets to the worker.
	rtp, rtcp *sock
	mux       bool
	plain     bool
	symmetric bool
	rocReset  bool

	remote, remoteRTCP netip.AddrPort // invalid until given or latched
	latched            bool           // remote learned from a packet
	ice                *iceCreds      // ICE-lite on the leg's dedicated sockets (ng); nil: none
	// BUNDLE (ngbundle.go): via is the transport leg a bundled leg sends
	// through (nil: its own); bundle routes the transport leg's inbound
	// packets to the bundled legs (nil: no bundle). Set before the
	// session is installed, never changed.
	via    *leg
	bundle *bundle
	// dtls is the DTLS-SRTP keying of the leg (dtls.go); nil: SDES or
	// plain.
	dtls *dtlsLeg
	// iceFrom are the last sources whose connectivity check passed
	// (ICE-lite legs): a DTLS leg without a remote takes DTLS only from
	// them.
	iceFrom [4]netip.AddrPort
	iceNext uint8

	// in holds the peer's keys, newest first; keys past their grace
	// period are dropped lazily. inHint is the key that authenticated the
	// last packet, tried first.
	in      []*keyState
	inHint  *keyState
	inEpoch uint32
	// out is the gateway's key; next is announced and becomes out at
	// switchAt (monotonic ns) or when out's budget runs out.
	out       *keyState
	next      *keyState
	switchAt  int64
	useMKI    bool
	lifetime  uint64
	rekeyedAt int64 // monotonic ns of the last outbound key change

	inSSRC  ssrcTable
	outSSRC ssrcTable
	// flows are this leg's entries in a shared socket's demux table.
	flows []flowKey

	c          legCounters
	lastPacket time.Time
}

// legCounters are a leg's per-session counters.
type legCounters struct {
	PacketsIn    uint64 `json:"packets_in"`
	PacketsOut   uint64 `json:"packets_out"`
	BytesIn      uint64 `json:"bytes_in"`
	BytesOut     uint64 `json:"bytes_out"`
	RTCPIn       uint64 `json:"rtcp_in"`
	RTCPOut      uint64 `json:"rtcp_out"`
	AuthFailures uint64 `json:"auth_failures"`
	Replays      uint64 `json:"replays"`
	Malformed    uint64 `json:"malformed"`
	WrongSource  uint64 `json:"wrong_source"`
	KeyExpired   uint64 `json:"key_expired"`
	SSRCLimit    uint64 `json:"ssrc_limit"`
	NoRemote     uint64 `json:"no_remote"`
	KeyExhausted uint64 `json:"key_exhausted"`
	SendErrors   uint64 `json:"send_errors"`
	// NoKey counts SRTP that arrived or would leave before a DTLS leg's
	// handshake gave it keys; DTLSDropped DTLS records dropped.
	NoKey       uint64 `json:"no_key,omitempty"`
	DTLSDropped uint64 `json:"dtls_dropped,omitempty"`
}

func (c *legCounters) add(o legCounters) {
	c.PacketsIn += o.PacketsIn
	c.PacketsOut += o.PacketsOut
	c.BytesIn += o.BytesIn
	c.BytesOut += o.BytesOut
	c.RTCPIn += o.RTCPIn
	c.RTCPOut += o.RTCPOut
	c.AuthFailures += o.AuthFailures
	c.Replays += o.Replays
	c.Malformed += o.Malformed
	c.WrongSource += o.WrongSource
	c.KeyExpired += o.KeyExpired
	c.SSRCLimit += o.SSRCLimit
	c.NoRemote += o.NoRemote
	c.KeyExhausted += o.KeyExhausted
	c.SendErrors += o.SendErrors
	c.NoKey += o.NoKey
	c.DTLSDropped += o.DTLSDropped
}

// reason is why a packet was dropped; it indexes metrics and counters.
type reason uint8

const (
	reasonAuth reason = iota
	reasonReplay
	reasonMalformed
	reasonWrongSource
	reasonKeyExpired
	reasonSSRCLimit
	reasonNoRemote
	reasonKeyExhausted
	reasonSendError
	reasonUnknownFlow
	reasonTrialRefused
	reasonJunkSource
	reasonNoKey
	reasonDTLSRefused
	reasonDTLSBusy
	reasonDTLSQueue
	// reasonUnsteered: a datagram steered to a worker for a dedicated
	// port it no longer has (the socket closed meanwhile).
	reasonUnsteered
	numReasons
)

var reasonNames = [numReasons]string{
	"auth_failure", "replay", "malformed", "wrong_source", "key_expired",
	"ssrc_limit", "no_remote", "key_exhausted", "send_error", "unknown_flow",
	"trial_refused", "junk_source", "no_key", "dtls_refused", "dtls_busy", "dtls_queue_full",
	"steered_closed_port",
}

func (r reason) String() string { return reasonNames[r] }

// count adds one drop to the leg's counters.
func (c *legCounters) count(r reason) {
	switch r {
	case reasonAuth:
		c.AuthFailures++
	case reasonReplay:
		c.Replays++
	case reasonMalformed:
		c.Malformed++
	case reasonWrongSource:
		c.WrongSource++
	case reasonKeyExpired:
		c.KeyExpired++
	case reasonSSRCLimit:
		c.SSRCLimit++
	case reasonNoRemote:
		c.NoRemote++
	case reasonKeyExhausted:
		c.KeyExhausted++
	case reasonSendError:
		c.SendErrors++
	case reasonNoKey:
		c.NoKey++
	case reasonDTLSRefused, reasonDTLSBusy, reasonDTLSQueue:
		c.DTLSDropped++
	}
}

// ssrcEntry is one SSRC seen on a leg direction.
type ssrcEntry struct {
	ssrc    uint32
	lastSeq uint16
}

// ssrcTable is a small bounded set of SSRCs. Linear search: a leg carries
// a handful of streams.
type ssrcTable struct {
	e []ssrcEntry
}

func (t *ssrcTable) find(ssrc uint32) int {
	for i := range t.e {
		if t.e[i].ssrc == ssrc {
			return i
		}
	}
	return -1
}

// note records ssrc with its latest sequence number; false when the table
// is full and ssrc is new.
func (t *ssrcTable) note(ssrc uint32, seq uint16, max int) bool {
	if i := t.find(ssrc); i >= 0 {
		t.e[i].lastSeq = seq
		return true
	}
	if len(t.e) >= max {
		return false
	}
	t.e = append(t.e, ssrcEntry{ssrc: ssrc, lastSeq: seq})
	return true
}

// has reports whether ssrc is known or there is room for it.
func (t *ssrcTable) room(ssrc uint32, max int) bool {
	return len(t.e) < max || t.find(ssrc) >= 0
}

// remoteFor returns where packets of the given kind go on this leg.
func (l *leg) remoteFor(rtcp bool) netip.AddrPort {
	if rtcp && !l.mux {
		return l.remoteRTCP
	}
	return l.remote
}

// sockFor returns the socket packets of the given kind leave from.
func (l *leg) sockFor(rtcp bool) *sock {
	if rtcp {
		return l.rtcp
	}
	return l.rtp
}

// noteICE records src as a source that passed a connectivity check.
func (l *leg) noteICE(src netip.AddrPort) {
	for _, a := range l.iceFrom {
		if a == src {
			return
		}
	}
	l.iceFrom[l.iceNext%uint8(len(l.iceFrom))] = src
	l.iceNext++
}

// iceVerified reports whether src passed a connectivity check on l.
func (l *leg) iceVerified(src netip.AddrPort) bool {
	for _, a := range l.iceFrom {
		if a == src && a.IsValid() {
			return true
		}
	}
	return false
}

// peer returns the session's other leg.
func (l *leg) peer() *leg { return &l.s.legs[l.id.other()] }

// wipe destroys every key of the leg.
func (l *leg) wipe() {
	for _, k := range l.in {
		k.wipe()
	}
	l.in, l.inHint = nil, nil
	if l.out != nil {
		l.out.wipe()
	}
	if l.next != nil {
		l.next.wipe()
	}
	l.out, l.next = nil, nil
}
