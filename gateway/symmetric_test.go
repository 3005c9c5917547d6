package gateway

import (
	"testing"
	"time"
)

// TestMovedPeerCountsWrongSourceShared: on a shared port, a latched peer
// whose stream (same SSRC, valid packets) arrives from a new address is
// dropped by symmetric and counted as wrong_source on its leg, as on a
// dedicated port. Before the fix it was counted on the socket as an
// unknown flow and the leg showed nothing.
func TestMovedPeerCountsWrongSourceShared(t *testing.T) {
	cfg := testConfig()
	cfg.Internal.PortMode, cfg.Cloud.PortMode = PortsShared, PortsShared
	g := startGateway(t, cfg)
	c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, true)
	to := c.info.Internal.Local
	tx := contextFor(t, c.kInt, false)
	rx := contextFor(t, c.info.Cloud.Crypto, true)
	c.intRTP.send(to, encRTP(t, tx, rtpPacket(t, 0x5eed, 10, 160)))
	mustRecvRTP(t, c.cloudRTP, rx, rtpPacket(t, 0x5eed, 10, 160))

	moved := newPeer(t)
	const sent = 3
	for i := range sent {
		moved.send(to, encRTP(t, tx, rtpPacket(t, 0x5eed, uint16(11+i), 160)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ct := mustShow(t, g, c.info.ID).Internal.Counters
		if ct.WrongSource == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wrong_source = %d after %d packets from the moved peer, want %d", ct.WrongSource, sent, sent)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.cloudRTP.expectNothing(100 * time.Millisecond)
	if info := mustShow(t, g, c.info.ID); info.Internal.Remote != c.intRTP.addr() {
		t.Fatalf("remote moved to %s", info.Internal.Remote)
	}
}
