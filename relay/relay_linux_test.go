package relay

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestUDPRelayChannels(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for i := 0; i < 20; i++ {
		roundTrip(t, rc, peer.LocalAddr(), []byte("hello through the relay"))
	}
	// The pion client binds a channel in the background after the first
	// write; wait until data flows as ChannelData.
	testutil.WaitFor(t, "channel data", 5*time.Second, func() bool {
		roundTrip(t, rc, peer.LocalAddr(), []byte("ping"))
		return r.metric(t, "mediaedge_relay_packets_total", "direction", "to_client") > 5 &&
			len(r.Allocations()) == 1 && r.Allocations()[0].Channels == 1
	})
	if got := r.metric(t, "mediaedge_relay_allocations_active", "transport", "udp", "relay", "udp"); got != 1 {
		t.Errorf("active allocations = %v, want 1", got)
	}
	_ = net.IPv4len
}
