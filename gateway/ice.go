package gateway

import (
	"crypto/rand"
	"net/netip"
	"strings"

	"github.com/pion/stun/v4"
)

// iceCreds are the ICE-lite credentials of one leg (RFC 8445 section 2.5):
// mediaedge answers the peer's connectivity checks and never sends any.
// Set when the session is created, never changed; pwd is secret.
type iceCreds struct {
	ufrag, pwd string
}

const iceAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newICECreds returns a fresh ufrag (8 characters) and password (24, RFC
// 8445 wants at least 22), from crypto/rand.
func newICECreds() (*iceCreds, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	for i := range b {
		b[i] = iceAlphabet[int(b[i])%len(iceAlphabet)]
	}
	return &iceCreds{ufrag: string(b[:8]), pwd: string(b[8:])}, nil
}

// stunHeader is the length of a STUN header; RTP and RTCP start with
// version 2 (0b10), STUN with 0b00 (RFC 7983 demultiplexing).
const stunHeader = 20

// isSTUN tells a STUN message from RTP and RTCP by its first byte.
func isSTUN(b []byte) bool { return len(b) >= stunHeader && b[0] < 2 }

// stunCheck answers a connectivity check that arrived on a dedicated
// socket of a leg with ICE-lite, in place in buf: a Binding success
// response with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY under the leg's
// password and FINGERPRINT when the check carries the leg's ufrag and
// authenticates; 400 without USERNAME or MESSAGE-INTEGRITY, 401 when they
// do not match. A check with USE-CANDIDATE (the controlling peer's
// nomination) moves the leg's remote address to the check's source.
// Anything else is dropped and counted. Called only by s's worker; checks
// are rare, so this path may allocate.
func (w *worker) stunCheck(s *sock, src netip.AddrPort, buf []byte, n int) (*sock, *leg, netip.AddrPort, int) {
	l := s.owner
	m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		w.drop(l, reasonMalformed)
		return nil, nil, netip.AddrPort{}, 0
	}
	var user stun.Username
	integrity := stun.NewShortTermIntegrity(l.ice.pwd)
	code := stun.ErrorCode(0)
	switch {
	case user.GetFrom(m) != nil || !m.Contains(stun.AttrMessageIntegrity):
		code = stun.CodeBadRequest
	case !strings.HasPrefix(user.String(), l.ice.ufrag+":") || integrity.Check(m) != nil:
		code = stun.CodeUnauthorized
	}
	var res *stun.Message
	var err error
	if code != 0 {
		w.drop(l, reasonAuth)
		res, err = stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingError, code, stun.Fingerprint)
	} else {
		l.noteICE(src)
		rtcp := s == l.rtcp && l.rtcp != l.rtp
		if m.Contains(stun.AttrUseCandidate) && l.remoteFor(rtcp) != src {
			if rtcp {
				l.remoteRTCP = src
			} else {
				l.remote = src
				if l.mux {
					l.remoteRTCP = src
				}
			}
			l.latched = true
			w.latched(l, src, rtcp)
		}
		if l.dtls != nil && l.dtls.t != nil {
			w.dtlsStart(l.dtls.t) // an active leg waits for its peer's address
		}
		res, err = stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())}, integrity, stun.Fingerprint)
	}
	if err != nil || len(res.Raw) > len(buf) {
		w.drop(l, reasonMalformed)
		return nil, nil, netip.AddrPort{}, 0
	}
	return s, l, src, copy(buf, res.Raw)
}
