package relay

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/mediaedge/mediaedge/internal/config"
)

// rawTransact sends m on c to server and returns the response with the
// same transaction ID.
func rawTransact(tb testing.TB, c *net.UDPConn, server netip.AddrPort, m *stun.Message) *stun.Message {
	tb.Helper()
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		if _, err := c.WriteToUDPAddrPort(m.Raw, server); err != nil {
			tb.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			r := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if r.Decode() == nil && r.TransactionID == m.TransactionID {
				_ = c.SetReadDeadline(time.Time{})
				return r
			}
		}
	}
	tb.Fatal("no response")
	return nil
}

type reqTransportUDP struct{}

func (reqTransportUDP) AddTo(m *stun.Message) error {
	m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
	return nil
}

// rawChannel allocates on r from a plain UDP socket and binds channel
// 0x4000 to peer, so that a benchmark can write ChannelData directly.
func rawChannel(tb testing.TB, r *testRelay, peer netip.AddrPort) *net.UDPConn {
	tb.Helper()
	network, local := "udp4", "127.0.0.1:0"
	if r.udp.Addr().Is6() {
		network, local = "udp6", "[::1]:0"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	rawChannelOn(tb, r, peer, c)
	return c
}

// rawChannelOn allocates, authenticates and binds channel 0x4000 to peer
// from the client socket c.
func rawChannelOn(tb testing.TB, r *testRelay, peer netip.AddrPort, c *net.UDPConn) {
	tb.Helper()
	rawBind(tb, r, peer, c, rawAllocate(tb, r, c))
}

// rawAllocate allocates from the client socket c and returns the
// attributes that authenticate its next requests.
func rawAllocate(tb testing.TB, r *testRelay, c *net.UDPConn) []stun.Setter {
	tb.Helper()
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), reqTransportUDP{})
	var nonce stun.Nonce
	if err := nonce.GetFrom(rawTransact(tb, c, r.udp, m)); err != nil {
		tb.Fatal(err)
	}
	auth := []stun.Setter{stun.NewUsername(testUser), stun.NewRealm(testRealm), nonce}
	integ := stun.NewLongTermIntegrity(testUser, testRealm, testPass)
	m = stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), reqTransportUDP{}}, append(auth, integ)...)...)
	if code := errorCode(rawTransact(tb, c, r.udp, m)); code != 0 {
		tb.Fatalf("allocate: %d", code)
	}
	return append(auth, integ)
}

// rawBind binds channel 0x4000 to peer; auth is rawAllocate's.
func rawBind(tb testing.TB, r *testRelay, peer netip.AddrPort, c *net.UDPConn, auth []stun.Setter) {
	tb.Helper()
	m := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		channelNumber(0x4000), xorPeer{addr: peer.Addr(), port: peer.Port()}}, auth...)...)
	if code := errorCode(rawTransact(tb, c, r.udp, m)); code != 0 {
		tb.Fatalf("channel bind: %d", code)
	}
}

// BenchmarkChannelDataRoundTrip measures the relay's data path end to end
// on loopback: client -> relay -> echo peer -> relay -> client, with up to
// window datagrams in flight, with and without coalescing (a window of
// one is a closed loop that never fills a coalesce window, so both run
// without sleeping; before coalescing adapted to the rate, the echo's reply
// right after the request started it and a window of one measured the
// coalesce window). allocs/op
// counts the whole process (relay, peer and this client); the relay's
// share is zero.
func BenchmarkChannelDataRoundTrip(b *testing.B) {
	for _, coalesce := range []time.Duration{0, 500 * time.Microsecond} {
		for _, size := range []int{160, 1200} {
			for _, window := range []int{1, 32} {
				b.Run(fmt.Sprintf("coalesce=%dus/size=%d/window=%d", coalesce.Microseconds(), size, window), func(b *testing.B) {
					cfg := baseConfig(b)
					cfg.UDPShards = 1
					cfg.Coalesce = config.Duration(coalesce)
					r := startRelay(b, cfg)
					peer := echoPeer(b, "udp4", "127.0.0.1:0")
					c := rawChannel(b, r, peer.LocalAddr().(*net.UDPAddr).AddrPort())
					out := make([]byte, 4+size)
					binary.BigEndian.PutUint16(out[0:2], 0x4000)
					binary.BigEndian.PutUint16(out[2:4], uint16(size))
					in := make([]byte, 2048)
					_ = c.SetReadDeadline(time.Now().Add(time.Minute))
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					sent, recv := 0, 0
					for recv < b.N {
						for sent < b.N && sent-recv < window {
							if _, err := c.WriteToUDPAddrPort(out, r.udp); err != nil {
								b.Fatal(err)
							}
							sent++
						}
						if _, _, err := c.ReadFromUDPAddrPort(in); err != nil {
							b.Fatalf("after %d of %d: %v", recv, b.N, err)
						}
						recv++
					}
				})
			}
		}
	}
}

// BenchmarkPolicyPeer measures the peer policy check (once per permission
// or channel, and per datagram on the slow path).
func BenchmarkPolicyPeer(b *testing.B) {
	p := testPolicy([]string{"192.0.2.128/25"}, []string{"8.8.8.0/24"})
	a := netip.MustParseAddr("64:ff9b::808:404")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = p.Peer(a)
	}
}
