package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// TestGSOGrouping checks how datagrams are grouped into UDP GSO messages:
// runs to one destination, of one size, where a shorter datagram may end
// a run, within the kernel's segment and byte limits.
func TestGSOGrouping(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	b := netip.MustParseAddrPort("192.0.2.2:1000")
	sizes := func(n, size int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = size
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		dsts  []netip.AddrPort // one per datagram; nil: all to a
		gso   bool
		want  []int // datagrams per message
	}{
		{name: "one datagram", sizes: []int{160}, gso: true, want: []int{1}},
		{name: "equal run", sizes: []int{160, 160, 160}, gso: true, want: []int{3}},
		{name: "shorter ends a run", sizes: []int{160, 160, 100, 160}, gso: true, want: []int{3, 1}},
		{name: "longer starts a new run", sizes: []int{100, 160, 160}, gso: true, want: []int{1, 2}},
		{name: "destinations split runs", sizes: []int{160, 160, 160, 160}, dsts: []netip.AddrPort{a, a, b, a}, gso: true, want: []int{2, 1, 1}},
		{name: "without gso", sizes: []int{160, 160}, gso: false, want: []int{1, 1}},
		{name: "segment limit", sizes: sizes(70, 100), gso: true, want: []int{64, 6}},
		{name: "byte limit", sizes: sizes(60, 1204), gso: true, want: []int{53, 7}},
		{name: "empty datagram alone", sizes: []int{0, 160, 160}, gso: true, want: []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMmsg(128)
			bufs := make([][]byte, len(tc.sizes))
			dsts := make([]netip.AddrPort, len(tc.sizes))
			for i, n := range tc.sizes {
				bufs[i] = make([]byte, n)
				dsts[i] = a
				if tc.dsts != nil {
					dsts[i] = tc.dsts[i]
				}
			}
			k := m.build(false, bufs, dsts, tc.gso)
			if fmt.Sprint(m.segs[:k]) != fmt.Sprint(tc.want) {
				t.Fatalf("messages = %v, want %v", m.segs[:k], tc.want)
			}
			for i := 0; i < k; i++ {
				if got := m.hdrs[i].hdr.Controllen != 0; got != (m.segs[i] > 1) {
					t.Errorf("message %d: control message %v with %d segments", i, got, m.segs[i])
				}
			}
		})
	}
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
	if r.gso.Load() && r.metric(t, "mediaedge_relay_gso_datagrams_total") == 0 {
		t.Error("no datagram left as a GSO segment")
	}
}
