package ngcall

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNGCallReKeysEveryLeg drives a call over the ng socket with real SDP
// (bench's rtpengine client: offer with the caller's
// AES_CM_128_HMAC_SHA1_80 key, answer with a callee key of another
// suite), then sends real SRTP both ways and checks that the four keys
// are distinct, each leg carries SRTP that opens only with that leg's
// key, every payload arrives intact, and delete frees the ports.
func TestNGCallReKeysEveryLeg(t *testing.T) {
	for _, bSuite := range []string{"AES_CM_128_HMAC_SHA1_32", "AEAD_AES_256_GCM", "AES_256_CM_HMAC_SHA1_80"} {
		t.Run(bSuite, func(t *testing.T) {
			g := startGateway(t, ngConfig())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			client, err := sut.DialNG(g.NGAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			a, b := freeAddr(t), freeAddr(t)
			calls, err := sut.SetupRtpengine(ctx, client, sut.RtpengineSetup{Calls: 1, A: a, B: b, BSuite: bSuite})
			if err != nil {
				t.Fatal(err)
			}
			fl := calls.Flows
			keys := map[string][]byte{"caller": fl[0].TxKey.Master, "gateway->callee": fl[0].RxKey.Master,
				"callee": fl[1].TxKey.Master, "gateway->caller": fl[1].RxKey.Master}
			for n1, k1 := range keys {
				for n2, k2 := range keys {
					if n1 < n2 && bytes.Equal(k1, k2) {
						t.Errorf("the %s and %s keys are the same", n1, n2)
					}
				}
			}
			if fl[0].RxKey.Suite.Name != bSuite || fl[1].RxKey.Suite.Name != "AES_CM_128_HMAC_SHA1_80" {
				t.Errorf("suites toward callee %s, toward caller %s", fl[0].RxKey.Suite.Name, fl[1].RxKey.Suite.Name)
			}
			rep, err := load.RunSRTP(ctx, fl, load.SRTPOptions{Target: "mediaedge-ng", Count: 200, Rate: 2000, MaxTime: 15 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("SRTP through the ng call: %+v", rep.Directions)
			}

			// One packet each way, captured raw: it opens with the
			// leg's key and with none of the other three.
			sessions, err := g.Sessions(ctx)
			if err != nil || len(sessions) != 1 {
				t.Fatalf("sessions: %v %v", sessions, err)
			}
			for i, f := range fl {
				raw := sendOneSRTP(t, f)
				if !srtpcheck.OpensWithAny(raw, []srtpcheck.Key{f.RxKey}) {
					t.Errorf("flow %d: the packet does not open with the leg's key", i)
				}
				others := []srtpcheck.Key{f.TxKey, fl[1-i].TxKey, fl[1-i].RxKey}
				if srtpcheck.OpensWithAny(raw, others) {
					t.Errorf("flow %d: the packet opens with another leg's key", i)
				}
			}
			local := []string{sessions[0].Internal.Local, sessions[0].Internal.LocalRTCP, sessions[0].Cloud.Local, sessions[0].Cloud.LocalRTCP}
			calls.Close(ctx)
			testutil.WaitFor(t, "the call and its sessions to go", 5*time.Second, func() bool { return numCalls(t, g.NGAddr()) == 0 && len(mustSessions(t, g)) == 0 })
			for _, l := range local {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(l)))
				if err != nil {
					t.Errorf("port %s still held after delete: %v", l, err)
					continue
				}
				c.Close()
			}
		})
	}
}

// sendOneSRTP sends one SRTP packet along flow f and returns what the
// gateway delivered at f.Recv.
func sendOneSRTP(t *testing.T, f load.Flow) []byte {
	t.Helper()
	recv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(f.Recv)))
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	src, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(f.Src)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, err := f.TxKey.Context()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for seq := uint16(40000); seq < 40010; seq++ {
		pkt := ngRTP(seq, 0x5eed)
		ct, err := ctx.EncryptRTP(nil, pkt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.WriteToUDPAddrPort(ct, f.Target); err != nil {
			t.Fatal(err)
		}
		_ = recv.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := recv.ReadFromUDPAddrPort(buf)
		if err == nil {
			return append([]byte(nil), buf[:n]...)
		}
	}
	t.Fatalf("nothing came out at %s", f.Recv)
	return nil
}
