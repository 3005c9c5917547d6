package relay

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// RFC 6062 Connect without blocking the client.
//
// pion handles a Connect on the reader goroutine of the client's control
// connection and dials the peer there, so a peer that does not answer
// would stall every other request of that client (refreshes, permissions,
// channel data) for the whole connect timeout. The relay therefore takes
// authenticated Connect requests out of the stream (clientConn.Read), dials
// in the background, and puts the request back into the stream once the
// dial has finished; pion then handles it at once: its AllocateConn call
// receives the connection (or the error, answered with 447) the relay
// already has. Other requests of the client flow in the meantime.

// connectTimeout bounds an RFC 6062 Connect; the RFC wants at least 30 s.
const connectTimeout = 30 * time.Second

// maxPendingConnects bounds the Connects of one allocation being dialled
// at the same time; more are answered 447.
const maxPendingConnects = 16

const typeConnectRequest = 0x000a

// pendingConnect is a Connect being dialled, or dialled and waiting for
// pion to take the result. Its fields are guarded by the tcpRelay's mu.
type pendingConnect struct {
	peer   netip.AddrPort
	cancel context.CancelFunc
	ready  bool // the dial has finished
	conn   net.Conn
	err    error
}

// abandon cancels the dial or closes its unclaimed connection. The caller
// has removed pc from its tcpRelay.
func (pc *pendingConnect) abandon() {
	pc.cancel()
	if pc.conn != nil {
		pc.conn.Close()
	}
}

// claim hands over the finished dial to peer, if there is one.
func (t *tcpRelay) claim(peer netip.AddrPort) *pendingConnect {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, pc := range t.connects {
		if pc.peer == peer && pc.ready {
			t.connects = append(t.connects[:i], t.connects[i+1:]...)
			return pc
		}
	}
	return nil
}

// drop abandons pc if pion did not claim it (it refused the Connect for
// another reason, e.g. a stale nonce).
func (t *tcpRelay) drop(pc *pendingConnect) {
	t.mu.Lock()
	found := false
	for i, q := range t.connects {
		if q == pc {
			t.connects = append(t.connects[:i], t.connects[i+1:]...)
			found = true
			break
		}
	}
	t.mu.Unlock()
	if found {
		pc.abandon()
	}
}

// connectAsync takes an authenticated Connect request from client c out of
// the stream and dials its peer in the background. It reports false when
// pion must handle the request as it is (unauthenticated, no TCP
// allocation, a malformed or refused peer: pion answers those at once).
func (s *Server) connectAsync(c *clientConn, raw []byte) bool {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return false
	}
	key, ok := s.authenticated(m, c.remote)
	if !ok {
		return false
	}
	s.mu.Lock()
	a := s.byFive[fiveKey{client: c.remote, listener: c.l.addr, tcp: true}]
	s.mu.Unlock()
	if a == nil || a.tcp == nil {
		return false
	}
	var xa stun.XORMappedAddress
	if xa.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
		return false
	}
	ip, ok := netip.AddrFromSlice(xa.IP)
	if !ok || xa.Port == 0 {
		return false
	}
	peer := netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port))
	if s.policy.Load().Peer(peer.Addr()) != reasonNone || peer.Addr().Is4() == a.v6 {
		return false
	}
	t := a.tcp
	t.mu.Lock()
	var code stun.ErrorCode
	for _, pc := range t.connects {
		if pc.peer == peer {
			code = stun.CodeConnAlreadyExists // 446 (RFC 6062 section 5.2)
		}
	}
	if code == 0 && len(t.connects) >= maxPendingConnects {
		code = stun.CodeConnTimeoutOrFailure // 447
	}
	if code != 0 || t.closed {
		t.mu.Unlock()
		if code != 0 {
			s.answerConnect(c, m, key, code)
			return true
		}
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		t.mu.Unlock()
		return false
	}
	s.dials.Add(1)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.connectTimeout)
	pc := &pendingConnect{peer: peer, cancel: cancel}
	t.connects = append(t.connects, pc)
	t.mu.Unlock()

	network := "tcp4"
	if a.v6 {
		network = "tcp6"
	}
	go func() {
		defer s.dials.Done()
		conn, err := s.dial(ctx, network, a.relayAddr(), peer)
		cancel()
		t.mu.Lock()
		live := !t.closed
		if live {
			live = false
			for _, q := range t.connects {
				live = live || q == pc
			}
		}
		if live {
			pc.ready, pc.conn, pc.err = true, conn, err
		}
		t.mu.Unlock()
		if !live {
			if conn != nil {
				conn.Close()
			}
			return
		}
		c.inject(m.Raw, t, pc)
	}()
	return true
}

// answerConnect answers a Connect request itself with an error code.
func (s *Server) answerConnect(c *clientConn, m *stun.Message, key []byte, code stun.ErrorCode) {
	out, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(stun.MethodConnect, stun.ClassErrorResponse),
		code, stun.MessageIntegrity(key))
	if err == nil {
		_ = c.reply(out.Raw)
	}
}
