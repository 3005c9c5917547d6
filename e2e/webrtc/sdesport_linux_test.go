package webrtc

import (
	"net"
	"testing"
)

// TestSDESReceiverRetriesTakenPort: when the receiver's port is taken
// between choosing it and ffmpeg binding it, the peer starts ffmpeg again
// on another port instead of running on with a receiver that exited.
func TestSDESReceiverRetriesTakenPort(t *testing.T) {
	p := newSDESPeer(t, 600, 1000)
	taken := p.rxAddr.Load().Port
	for _, port := range []int{taken, taken + 1} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Skipf("could not take port %d for the test: %v", port, err)
		}
		defer c.Close()
	}
	p.Receive(newSDESKey(t))
	if got := p.rxAddr.Load().Port; got == taken {
		t.Fatalf("the receiver stayed on the taken port %d", taken)
	}
}
