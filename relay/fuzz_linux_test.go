package relay

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// fuzzServer is a Server with just enough state for inspect: policy and
// credentials, no sockets.
func fuzzServer(tb testing.TB) *Server {
	st := &dataStats{}
	m, _ := newMetrics(noRegistry{}, st)
	s := &Server{log: discardLogger(), metrics: m, allocs: map[uint64]*alloc{}, byRelayTCP: map[netip.AddrPort]*alloc{},
		byFive: map[fiveKey]*alloc{}, users: map[string]*userState{}}
	s.auth = newAuthenticator(discardLogger(), m, &credentials{realm: testRealm,
		users:   map[string][]byte{testUser: LongTermKey(testUser, testRealm, testPass)},
		secrets: [][]byte{[]byte(testSecret), []byte("another-secret-0123456789")}})
	s.policy.Store(newPeerPolicy(nil, nil, nil, nil))
	// No challenge rate: every request the relay drops would otherwise
	// look like an answer without a reply.
	lim := DefaultConfig().Limits
	lim.ChallengesPerSource = 0
	s.limits.Store(&lim)
	return s
}

func stunSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	for _, t := range []stun.MessageType{
		stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		stun.NewType(stun.MethodConnect, stun.ClassRequest),
	} {
		m, err := stun.Build(stun.TransactionID, t, stun.NewUsername(testUser), stun.NewRealm(testRealm),
			stun.NewNonce("n"), channelNumber(0x4001), xorPeer{addr: netip.MustParseAddr("127.0.0.1"), port: 9},
			stun.NewLongTermIntegrity(testUser, testRealm, testPass))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, m.Raw)
	}
	return out
}

// FuzzInspect feeds arbitrary client datagrams to the relay's pre-pion
// STUN inspection: no panic, and a reply only to a signed ChannelBind or
// Allocate.
func FuzzInspect(f *testing.F) {
	for _, s := range stunSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{0, 9, 0, 0, 0x21, 0x12, 0xa4, 0x42})
	s := fuzzServer(f)
	src := netip.MustParseAddrPort("192.0.2.1:4000")
	lis := netip.MustParseAddrPort("192.0.2.2:3478")
	f.Fuzz(func(t *testing.T, b []byte) {
		replied := false
		answered := s.inspect(b, src, lis, false, func([]byte) error { replied = true; return nil })
		if answered != replied {
			t.Fatalf("answered=%v but replied=%v", answered, replied)
		}
	})
}

// pipeConn is a net.Conn reading from a byte slice and discarding writes.
type pipeConn struct {
	r io.Reader
	net.Conn
}

func (p *pipeConn) Read(b []byte) (int, error)      { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)     { return len(b), nil }
func (p *pipeConn) SetReadDeadline(time.Time) error { return nil }
func (p *pipeConn) Close() error                    { return nil }
func (p *pipeConn) RemoteAddr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000} }
func (p *pipeConn) LocalAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 3478} }

// FuzzClientConnFraming feeds an arbitrary stream to the TCP framer: it
// must end with an error or EOF, never panic or loop, and never return
// more than it was given.
func FuzzClientConnFraming(f *testing.F) {
	seed := append([]byte{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0}, stunSeeds(f)[2]...)
	f.Add(seed)
	f.Add([]byte{0x40, 0x01, 0xff, 0xff})
	f.Add([]byte{0x00, 0x01, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42})
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		l := &tcpListener{srv: s, addr: netip.MustParseAddrPort("192.0.2.2:3478"), conns: map[*clientConn]struct{}{}}
		c := &clientConn{Conn: &pipeConn{r: bytes.NewReader(b)}, l: l, remote: netip.MustParseAddrPort("192.0.2.1:4000"), first: true}
		var out []byte
		buf := make([]byte, 1600)
		for i := 0; i < len(b)+10; i++ {
			n, err := c.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				// Frames the relay answered itself are removed; nothing
				// is ever added.
				if len(out) > len(b) {
					t.Fatalf("framer invented bytes: in %x out %x", b, out)
				}
				return
			}
		}
		t.Fatalf("no error after %d reads of a %d-byte stream", len(b)+10, len(b))
	})
}

// FuzzListenerDatagram sends arbitrary datagrams to a running relay's UDP
// listener from a client that has an allocation and channel 0x4000 bound:
// the worker parses each (ChannelData header, STUN, anything else) and must
// neither crash nor stop relaying.
func FuzzListenerDatagram(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 'p', 'i', 'n', 'g'})
	f.Add([]byte{0x40, 0x00, 0xff, 0xff, 'x'})
	f.Add([]byte{0x7f, 0xff, 0x00, 0x00})
	f.Add([]byte{0x80})
	f.Add([]byte{})
	for _, s := range stunSeeds(f) {
		f.Add(s)
	}
	r := startRelay(f, baseConfig(f))
	peer := echoPeer(f, "udp4", "127.0.0.1:0")
	c := rawChannel(f, r, peer.LocalAddr().(*net.UDPAddr).AddrPort())
	ping := []byte{0x40, 0x00, 0x00, 0x04, 'p', 'i', 'n', 'g'}
	buf := make([]byte, 4096)
	n := 0
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := c.WriteToUDPAddrPort(b, r.udp); err != nil {
			t.Skip(err) // e.g. EMSGSIZE for an input larger than a datagram
		}
		if n++; n%64 != 0 {
			return
		}
		// Now and then: the relay still relays.
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.WriteToUDPAddrPort(ping, r.udp); err != nil {
			t.Fatal(err)
		}
		for {
			m, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("the relay stopped relaying: %v", err)
			}
			if bytes.Equal(buf[:m], ping) {
				return
			}
		}
	})
}

// FuzzClassifyClient feeds arbitrary client datagrams to the worker's
// first look at them: never a panic; STUN only with a whole header, the
// magic cookie and the datagram's own length; ChannelData only with its
// payload inside the datagram.
func FuzzClassifyClient(f *testing.F) {
	for _, s := range stunSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{0x40, 0x00, 0x00, 0x64, 1, 2})
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, num, ln := classifyClient(b)
		switch kind {
		case clientSTUN:
			if !stun.IsMessage(b) || b[0]>>6 != 0 || int(binary.BigEndian.Uint16(b[2:4])) != len(b)-20 || len(b)%4 != 0 {
				t.Fatalf("% x classified as STUN", b)
			}
		case clientChannelData:
			if b[0]>>6 != 1 || 4+ln > len(b) || num>>14 != 1 {
				t.Fatalf("% x classified as ChannelData %#x of %d bytes", b, num, ln)
			}
			_ = b[4 : 4+ln]
		}
	})
}
