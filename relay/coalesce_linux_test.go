package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNoCoalescingAtLowLoad: paced round trips over a channel, far below
// the rate at which a window would collect a batch, are relayed at once:
// no worker sleeps a coalesce window (each sleep would add up to 2 ms to
// the round trip here), however busy the machine is.
func TestNoCoalescingAtLowLoad(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Coalesce = config.Duration(2 * time.Millisecond)
	r := startRelay(t, cfg)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	testutil.WaitFor(t, "a channel", 5*time.Second, func() bool {
		roundTrip(t, rc, peer.LocalAddr(), []byte("bind"))
		a := r.Allocations()
		return len(a) == 1 && a[0].Channels == 1
	})
	sleeps := func() (n uint64) {
		for _, w := range r.workers {
			n += w.loop.Sleeps()
		}
		return n
	}
	before := sleeps()
	for i := 0; i < 100; i++ {
		roundTrip(t, rc, peer.LocalAddr(), []byte(fmt.Sprint("paced ", i)))
		time.Sleep(3 * time.Millisecond)
	}
	if n := sleeps() - before; n != 0 {
		t.Errorf("workers slept %d coalesce windows for 100 paced round trips, want 0", n)
	}
}
