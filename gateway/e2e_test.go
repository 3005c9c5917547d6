package gateway

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// call is a test call through a gateway session: an internal and a cloud
// endpoint, each with RTP and (without rtcp-mux) RTCP sockets, and the
// four keys.
type call struct {
	t                   *testing.T
	info                *SessionInfo
	intRTP, intRTCP     *peer
	cloudRTP, cloudRTCP *peer
	kInt, kCloud        string // the peers' own keys
}

// newCall creates a session: the internal leg latches, the cloud leg's
// remote is given.
func newCall(t *testing.T, g *Gateway, intSuite, cloudSuite *Suite, mux bool) *call {
	t.Helper()
	c := &call{t: t, intRTP: newPeer(t), cloudRTP: newPeer(t),
		kInt: newKeyLine(t, intSuite), kCloud: newKeyLine(t, cloudSuite)}
	c.intRTCP, c.cloudRTCP = c.intRTP, c.cloudRTP
	req := CreateRequest{
		Internal: LegRequest{Crypto: c.kInt, RTCPMux: mux},
		Cloud:    LegRequest{Crypto: c.kCloud, RTCPMux: mux, Remote: c.cloudRTP.addr()},
	}
	if !mux {
		c.intRTCP, c.cloudRTCP = newPeer(t), newPeer(t)
		req.Cloud.RemoteRTCP = c.cloudRTCP.addr()
	}
	c.info = mustCreate(t, g, req)
	return c
}

func TestRekeyingEverySuitePair(t *testing.T) {
	g := startGateway(t, testConfig())
	all := suites[:6]
	for i, a := range all {
		for j, b := range all {
			mux := (i+j)%2 == 0
			t.Run(fmt.Sprintf("%s-to-%s-mux=%v", a.Name, b.Name, mux), func(t *testing.T) {
				c := newCall(t, g, a, b, mux)
				c.exchange(t, 3, 0x1111)
			})
		}
	}
}

func TestRekeyingRTCPMuxOnAndOff(t *testing.T) {
	for _, mode := range []PortMode{PortsDedicated, PortsShared} {
		for _, mux := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s-mux=%v", mode, mux), func(t *testing.T) {
				cfg := testConfig()
				cfg.Internal.PortMode, cfg.Cloud.PortMode = mode, mode
				g := startGateway(t, cfg)
				c := newCall(t, g, suiteAES128SHA80, suiteAEAD256, mux)
				c.exchange(t, 5, 0x2222)
				info := mustShow(t, g, c.info.ID)
				if info.Internal.Crypto != "" || info.Cloud.Crypto != "" {
					t.Error("show returned a key")
				}
				if !info.Internal.Latched || info.Internal.Remote != c.intRTP.addr() {
					t.Errorf("internal remote = %q latched=%v, want %s latched", info.Internal.Remote, info.Internal.Latched, c.intRTP.addr())
				}
				if got := info.Internal.Counters.PacketsIn; got != 5 {
					t.Errorf("internal packets_in = %d, want 5", got)
				}
				if got := info.Cloud.Counters.PacketsOut; got != 5 {
					t.Errorf("cloud packets_out = %d, want 5", got)
				}
				if got := info.Internal.Counters.RTCPIn; got != 1 {
					t.Errorf("internal rtcp_in = %d, want 1", got)
				}
			})
		}
	}
}

func TestTwoSSRCsOnOneLeg(t *testing.T) {
	g := startGateway(t, testConfig())
	c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA32, true)
	tx := contextFor(t, c.kInt, false)
	rx := contextFor(t, c.info.Cloud.Crypto, true)
	for seq := uint16(100); seq < 110; seq++ {
		for _, ssrc := range []uint32{0xa0d10, 0x71de0} { // audio and video of one bundle
			plain := rtpPacket(t, ssrc, seq, 100+int(ssrc%7)*100)
			c.intRTP.send(c.info.Internal.Local, encRTP(t, tx, plain))
			mustRecvRTP(t, c.cloudRTP, rx, plain)
		}
	}
	info := mustShow(t, g, c.info.ID)
	var in, out int
	for _, s := range append(info.Internal.Streams, info.Cloud.Streams...) {
		switch s.Direction {
		case "in":
			in++
		case "out":
			out++
		}
	}
	if in != 2 || out != 2 {
		t.Errorf("streams: %d in, %d out, want 2 and 2: %+v", in, out, info)
	}
}

// exchange sends n RTP packets and one RTCP packet each way and checks
// what arrives byte for byte; it also checks that what leaves the cloud
// leg does not authenticate with the internal key.
func (c *call) exchange(t *testing.T, n int, ssrc uint32) {
	t.Helper()
	intTx := contextFor(t, c.kInt, false)
	cloudRx := contextFor(t, c.info.Cloud.Crypto, true)
	wrongRx := contextFor(t, c.kInt, true)
	for seq := uint16(1); seq <= uint16(n); seq++ {
		plain := rtpPacket(t, ssrc, seq, 160)
		c.intRTP.send(c.info.Internal.Local, encRTP(t, intTx, plain))
		b := mustRecvRTP(t, c.cloudRTP, cloudRx, plain)
		if _, err := wrongRx.DecryptRTP(nil, b, nil); err == nil {
			t.Fatal("a cloud-leg packet authenticates with the internal leg's key")
		}
	}
	sr := rtcpPacket(t, ssrc, 7)
	c.intRTCP.send(c.info.Internal.LocalRTCP, encRTCP(t, intTx, sr))
	mustRecvRTCP(t, c.cloudRTCP, cloudRx, sr)

	// The other way: the internal leg latched its remote addresses from
	// the packets above.
	cloudTx := contextFor(t, c.kCloud, false)
	intRx := contextFor(t, c.info.Internal.Crypto, true)
	for seq := uint16(1); seq <= uint16(n); seq++ {
		plain := rtpPacket(t, ssrc+1, seq, 172)
		c.cloudRTP.send(c.info.Cloud.Local, encRTP(t, cloudTx, plain))
		mustRecvRTP(t, c.intRTP, intRx, plain)
	}
	rr := rtcpPacket(t, ssrc+1, 9)
	c.cloudRTCP.send(c.info.Cloud.LocalRTCP, encRTCP(t, cloudTx, rr))
	mustRecvRTCP(t, c.intRTCP, intRx, rr)
	_ = time.Second
}

// TestIPv6Legs: legs bound to ::1, peers on IPv6, both port modes.
func TestIPv6Legs(t *testing.T) {
	for _, mode := range []PortMode{PortsShared, PortsDedicated} {
		t.Run(string(mode), func(t *testing.T) {
			probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
			if err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			probe.Close()
			cfg := testConfig()
			for _, l := range []*LegConfig{&cfg.Internal, &cfg.Cloud} {
				l.Bind, l.PortMode = "::1", mode
			}
			g := startGateway(t, cfg)
			in6, cloud6 := newPeer6(t), newPeer6(t)
			c := &call{t: t, intRTP: in6, intRTCP: in6, cloudRTP: cloud6, cloudRTCP: cloud6,
				kInt: newKeyLine(t, suiteAEAD128), kCloud: newKeyLine(t, suiteAES128SHA80)}
			c.info = mustCreate(t, g, CreateRequest{
				Internal: LegRequest{Crypto: c.kInt, RTCPMux: true},
				Cloud:    LegRequest{Crypto: c.kCloud, RTCPMux: true, Remote: cloud6.addr()},
			})
			if !strings.HasPrefix(c.info.Internal.Local, "[::1]:") {
				t.Fatalf("internal local %s, want [::1]:port", c.info.Internal.Local)
			}
			c.exchange(t, 3, 0x66)
		})
	}
}

func newPeer6(t testing.TB) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}
