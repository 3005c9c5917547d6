package relay

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/pion/stun/v4"
)

// STUN message types the relay looks at before pion (method | class bits).
const (
	typeAllocateRequest         = 0x0003
	typeRefreshRequest          = 0x0004
	typeCreatePermissionRequest = 0x0008
	typeChannelBindRequest      = 0x0009
)

// inspect looks at a STUN message from a client before pion handles it and
// reports whether the relay answered it itself (pion must then not see it).
// It runs on control messages only, never on ChannelData.
//
//   - REST credentials signed by one of several secrets: the matching key
//     is learnt for the AuthHandler (see authenticator.preverify).
//   - CreatePermission and ChannelBind to a peer the policy refuses: the
//     relay answers the authenticated 403 itself, with a reason phrase
//     naming the policy's reason ("Forbidden: peer address denied by
//     policy (loopback)"). pion v5.1.3 answers ChannelBind with 401, and
//     CreatePermission with a 403 whose reason phrase is empty: its
//     PermissionHandler returns a bool only. (Connect, RFC 6062, still
//     gets pion's bare 403.)
//   - Allocate of a TCP relay over UDP: RFC 6062 section 5.1 wants 400;
//     pion would accept it and later dial peers on the UDP listener's
//     goroutine.
//   - Refresh with LIFETIME 0: remembered so that the accounting line says
//     "deallocated" rather than "expired".
//   - Requests without credentials (pion answers 401): counted, and dropped
//     beyond limits.challenges_per_source (see challenge).
func (s *Server) inspect(raw []byte, src, listener netip.AddrPort, tcp bool, reply func([]byte) error) bool {
	if len(raw) < 20 || !stun.IsMessage(raw) {
		return false
	}
	if unauthenticatedRequest(raw) {
		// pion answers it with a 401 challenge, unless its source is
		// over the rate: then it is dropped.
		return s.challenge(src.Addr())
	}
	s.auth.preverify(raw, src)
	switch t := binary.BigEndian.Uint16(raw[0:2]); t {
	case typeCreatePermissionRequest, typeChannelBindRequest:
		return s.inspectPeers(raw, src, reply)
	case typeAllocateRequest:
		// Only the authenticated attempt: the first, unauthenticated one
		// gets pion's 401 challenge, which clients expect first.
		if !tcp && requestsTCP(raw) {
			return s.refuseTCPOverUDP(raw, src, reply)
		}
	case typeRefreshRequest:
		s.inspectRefresh(raw, src, listener, tcp)
	}
	return false
}

// refuseTCPOverUDP answers an authenticated Allocate of a TCP relay on a
// UDP listener with 400 (clients check the integrity of answers to signed
// requests, so the answer is signed too).
func (s *Server) refuseTCPOverUDP(raw []byte, src netip.AddrPort, reply func([]byte) error) bool {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return false
	}
	key, ok := s.authenticated(m, src)
	if !ok {
		return false
	}
	out, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.ErrorCodeAttribute{Code: stun.CodeBadRequest, Reason: []byte("TCP allocations need a TCP or TLS connection")},
		stun.MessageIntegrity(key))
	if err != nil {
		return false
	}
	_ = reply(out.Raw)
	return true
}

// authenticated returns the key of m's user when m carries valid
// credentials and integrity; otherwise the relay leaves m to pion.
func (s *Server) authenticated(m *stun.Message, src netip.AddrPort) ([]byte, bool) {
	var un stun.Username
	var realm stun.Realm
	if un.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return nil, false
	}
	key, ok := s.auth.keyFor(src, un.String(), realm.String())
	if !ok || stun.MessageIntegrity(key).Check(m) != nil {
		return nil, false
	}
	return key, true
}

// requestsTCP reports whether an Allocate asks for REQUESTED-TRANSPORT TCP.
func requestsTCP(raw []byte) bool {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return false
	}
	v, err := m.Get(stun.AttrRequestedTransport)
	return err == nil && len(v) >= 1 && v[0] == 6
}

func (s *Server) inspectRefresh(raw []byte, src, listener netip.AddrPort, tcp bool) {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return
	}
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 || binary.BigEndian.Uint32(v) != 0 {
		return
	}
	if a := s.allocByFive(fiveKey{client: src, listener: listener, tcp: tcp}); a != nil {
		a.setEndReason("deallocated")
	}
}

// inspectPeers answers a CreatePermission or ChannelBind whose
// XOR-PEER-ADDRESS (any of them: one refused peer fails a CreatePermission
// as a whole, as in pion) the policy refuses.
func (s *Server) inspectPeers(raw []byte, src netip.AddrPort, reply func([]byte) error) bool {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return false
	}
	pol := s.policy.Load()
	reason, peerIP := reasonNone, ""
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		var peer stun.XORMappedAddress
		one := &stun.Message{TransactionID: m.TransactionID}
		one.Add(stun.AttrXORPeerAddress, a.Value)
		if peer.GetFromAs(one, stun.AttrXORPeerAddress) != nil {
			return false // pion answers 400
		}
		if r := pol.PeerIP(peer.IP); r != reasonNone {
			reason, peerIP = r, peer.IP.String()
			break
		}
	}
	if reason == reasonNone {
		return false
	}
	// Answer only an authenticated request; anything else goes to pion,
	// which challenges it (401 with a nonce).
	key, ok := s.authenticated(m, src)
	if !ok {
		return false
	}
	out, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(m.Type.Method, stun.ClassErrorResponse),
		stun.ErrorCodeAttribute{Code: stun.CodeForbidden, Reason: []byte(forbiddenPhrase(reason))},
		stun.MessageIntegrity(key))
	if err != nil {
		return false
	}
	s.peerDenied(reason, net.UDPAddrFromAddrPort(src), peerIP)
	_ = reply(out.Raw)
	return true
}

// forbiddenPhrase is the reason phrase of a 403 for a peer refused for
// reason.
func forbiddenPhrase(reason string) string {
	if reason == reasonDeniedPeers {
		return "Forbidden: peer address listed in relay.denied_peers"
	}
	return "Forbidden: peer address denied by policy (" + reason + ")"
}
