package relay

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
	"github.com/mediaedge/mediaedge/relay/fastpath"
)

// TestFastPathBitrateCap: with bitrate_per_allocation set, channels still
// enter the kernel and the program holds them to the cap: of a burst of 60
// 1,000-byte datagrams at 80 kbit/s (16 KiB burst) only the burst and what
// refills meanwhile reach the peer, the rest is dropped and counted in
// mediaedge_relay_drops_total{cause="bandwidth"}; received plus dropped is
// what was sent. A reload to the same cap per user instead keeps the
// channel in the kernel, held to the user's cap.
func TestFastPathBitrateCap(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	cfg := baseConfig(t)
	cfg.FastPath = FastPathOn
	cfg.Limits.BitratePerAllocation = 80000
	r := startRelay(t, cfg)
	if r.fast == nil {
		t.Fatal("fast_path: on started without the fast path")
	}
	peer := newCountingEcho(t)
	peerAddr := peer.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	client, conn := udpClientConn(t, r.udp, testUser, testPass)
	rc, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	testutil.WaitFor(t, "the capped channel in the kernel", 10*time.Second, func() bool {
		roundTrip(t, rc, peer.conn.LocalAddr(), []byte("warm-up"))
		return r.fastEntries() == 1
	})
	burstThrough := func(what string) {
		t.Helper()
		before := peer.packets.Load()
		drops0 := r.metric(t, "mediaedge_relay_drops_total", "cause", "bandwidth")
		// Raw ChannelData on the kernel's channel: pion might send some
		// as Send indications (user space, its own buckets) meanwhile.
		e := r.fastEntryOf(t, peerAddr)
		c0, err := r.fast.Counters(e)
		if err != nil {
			t.Fatal(err)
		}
		const burst = 60
		start := time.Now()
		for range burst {
			if _, err := conn.WriteTo(channelData(e.Channel, make([]byte, 1000)), net.UDPAddrFromAddrPort(r.udp)); err != nil {
				t.Fatal(err)
			}
		}
		var c fastpath.Counters
		testutil.WaitFor(t, what+": every datagram forwarded or dropped", 5*time.Second, func() bool {
			c, err = r.fast.Counters(e)
			return err == nil && c.ToPeerPackets-c0.ToPeerPackets+c.ToPeerDropped-c0.ToPeerDropped == burst
		})
		// Every datagram reached the program between start and now: the
		// bucket refilled for at most that long (on a busy machine the
		// datagrams may reach the relay well after they were written).
		took := time.Since(start)
		forwarded, dropped := c.ToPeerPackets-c0.ToPeerPackets, c.ToPeerDropped-c0.ToPeerDropped
		testutil.WaitFor(t, what+": the forwarded datagrams at the peer", 5*time.Second, func() bool {
			return peer.packets.Load()-before >= forwarded
		})
		got := peer.packets.Load() - before
		// 16,384 bytes of burst (less what the warm-up spent), plus
		// 10,000 bytes a second while the burst was arriving.
		most := uint64(16 + 10*took.Seconds() + 1)
		if got+dropped != burst || got < 15 || got > most || dropped == 0 {
			t.Fatalf("%s: the peer got %d and the kernel dropped %d of %d datagrams sent in %v; want the sum, 15 to %d through",
				what, got, dropped, burst, took, most)
		}
		testutil.WaitFor(t, what+": the kernel's drops in the metrics", 5*time.Second, func() bool {
			c, _ = r.fast.Counters(e)
			want := float64(c.ToPeerDropped + c.ToClientDropped - c0.ToPeerDropped - c0.ToClientDropped)
			return r.metric(t, "mediaedge_relay_drops_total", "cause", "bandwidth")-drops0 == want
		})
	}
	burstThrough("bitrate_per_allocation")

	perUser := cfg
	perUser.Limits.BitratePerAllocation, perUser.Limits.BitratePerUser = 0, 80000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Reload(ctx, perUser); err != nil {
		t.Fatal(err)
	}
	if e := r.fastEntryOf(t, peerAddr); e.Bitrate != 0 || e.UserBitrate != 80000 || e.User != testUser {
		t.Fatalf("after the reload the kernel entry is %+v, want only %s's cap of 80000", e, testUser)
	}
	burstThrough("bitrate_per_user")
}
