package relay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// TestSockSend checks the relay's send policy on a real socket: a
// destination the kernel refuses (broadcast: EACCES) or of the other
// family costs its own datagrams only; a GSO message the kernel refuses
// (a socket without UDP checksums: EINVAL) goes out one datagram at a
// time without turning GSO off; a closed socket sends nothing.
func TestSockSend(t *testing.T) {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	bcast := netip.MustParseAddrPort("255.255.255.255:9")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:9")
	for _, tc := range []struct {
		name    string
		dsts    []netip.AddrPort
		gso     bool
		noCheck bool // SO_NO_CHECK: the kernel refuses GSO messages
		failed  int
		got     []int // datagrams the peer receives, by index
	}{
		{name: "refused mid-batch", dsts: []netip.AddrPort{to, to, bcast, v6, to, to}, failed: 2, got: []int{0, 1, 4, 5}},
		{name: "refused mid-batch with gso", dsts: []netip.AddrPort{to, to, bcast, bcast, v6, to, to}, gso: true, failed: 3, got: []int{0, 1, 5, 6}},
		{name: "gso refused", dsts: []netip.AddrPort{to, to, to, to}, gso: true, noCheck: true, got: []int{0, 1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), sockOpts{})
			if err != nil {
				t.Fatal(err)
			}
			s := &sockFD{fd: fd}
			defer s.close()
			if tc.noCheck {
				if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
					t.Skipf("SO_NO_CHECK: %v", err)
				}
			}
			bufs := make([][]byte, len(tc.dsts))
			for i := range bufs {
				bufs[i] = bytes.Repeat([]byte{byte(i)}, 160)
			}
			var sw *udpbatch.GSO
			if tc.gso {
				sw = udpbatch.NewGSO()
			}
			failed, err := s.send(udpbatch.NewSender(readBatch, sw), false, bufs, tc.dsts)
			if failed != tc.failed || err != nil {
				t.Errorf("send = %d failed, %v; want %d, nil", failed, err, tc.failed)
			}
			if tc.gso && sw.Enabled() != udpbatch.GSOSupported() {
				t.Errorf("one refused GSO message turned GSO off")
			}
			_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2048)
			for _, i := range tc.got {
				n, err := peer.Read(buf)
				if err != nil {
					t.Fatalf("waiting for datagram %d: %v", i, err)
				}
				if !bytes.Equal(buf[:n], bufs[i]) {
					t.Fatalf("received % x..., want datagram %d", buf[:1], i)
				}
			}
		})
	}
	t.Run("closed socket", func(t *testing.T) {
		fd, err := openUDP(netip.MustParseAddrPort("127.0.0.1:0"), sockOpts{})
		if err != nil {
			t.Fatal(err)
		}
		s := &sockFD{fd: fd}
		s.close()
		if failed, _ := s.send(udpbatch.NewSender(1, nil), false, [][]byte{{1}, {2}}, []netip.AddrPort{to, to}); failed != 2 {
			t.Errorf("send on a closed socket: %d failed, want 2", failed)
		}
		if k := s.recv(udpbatch.NewRecvBatch(1), [][]byte{make([]byte, 10)}, make([]int, 1), make([]bool, 1), make([]netip.AddrPort, 1)); k != 0 {
			t.Errorf("recv on a closed socket: %d", k)
		}
	})
}

// TestBurstIntegrity sends bursts of ChannelData of mixed sizes through
// the relay to an echo peer and checks that every datagram comes back
// intact and in order: runs of equal sizes leave the relay as UDP GSO
// messages in both directions.
func TestBurstIntegrity(t *testing.T) {
	for _, family := range []string{"ipv4", "ipv6"} {
		t.Run(family, func(t *testing.T) { burstIntegrity(t, family) })
	}
}

func burstIntegrity(t *testing.T, family string) {
	cfg := baseConfig(t)
	cfg.UDPShards = 1
	peerNet, peerAddr := "udp4", "127.0.0.1:0"
	if family == "ipv6" {
		cfg.Listeners = []ListenerConfig{{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("[::1]:0")}}}
		cfg.RelayIPv6 = "::1"
		cfg.AllowedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("::1/128")}}
		peerNet, peerAddr = "udp6", "[::1]:0"
	}
	r := startRelay(t, cfg)
	peer := echoPeer(t, peerNet, peerAddr)
	c := rawChannel(t, r, peer.LocalAddr().(*net.UDPAddr).AddrPort())
	sizes := []int{160, 160, 160, 160, 1200, 1200, 1200, 80, 2000, 2000, 33, 160, 160}
	const bursts = 20
	var sent [][]byte
	for b := 0; b < bursts; b++ {
		for i, n := range sizes {
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(b*31 + i*7 + j)
			}
			if n >= 4 {
				binary.BigEndian.PutUint32(p, uint32(len(sent)))
			}
			sent = append(sent, p)
		}
	}
	// Send a burst, then read it back: the relay sees runs, not a
	// ping-pong, and no socket buffer overflows.
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for b := 0; b < bursts; b++ {
		burst := sent[b*len(sizes) : (b+1)*len(sizes)]
		for _, p := range burst {
			out := make([]byte, 4+len(p))
			binary.BigEndian.PutUint16(out[0:2], 0x4000)
			binary.BigEndian.PutUint16(out[2:4], uint16(len(p)))
			copy(out[4:], p)
			if _, err := c.WriteToUDPAddrPort(out, r.udp); err != nil {
				t.Fatal(err)
			}
		}
		for i, want := range burst {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("burst %d, datagram %d: %v (drops: %v)", b, i, err, r.metric(t, "mediaedge_relay_drops_total"))
			}
			got := buf[:n]
			if len(got) < 4 || binary.BigEndian.Uint16(got[0:2]) != 0x4000 || int(binary.BigEndian.Uint16(got[2:4])) != len(got)-4 {
				t.Fatalf("burst %d, datagram %d: bad ChannelData header % x", b, i, got[:min(4, len(got))])
			}
			if !bytes.Equal(got[4:], want) {
				t.Fatalf("burst %d, datagram %d: %d bytes differ from the %d sent", b, i, len(got)-4, len(want))
			}
		}
	}
	if r.gso.Enabled() && r.metric(t, "mediaedge_relay_gso_datagrams_total") == 0 {
		t.Error("no datagram left as a GSO segment")
	}
}
