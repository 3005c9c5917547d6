package relay

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// junkDatagrams are client datagrams that must never reach pion's STUN
// queue: 1 to 19 bytes that look like STUN by their first byte, headers
// without the magic cookie, with a declared length that does not match or
// is not a multiple of 4, and ChannelData that declares more than it holds.
func junkDatagrams() [][]byte {
	var out [][]byte
	for n := 1; n < 20; n++ {
		b := make([]byte, n)
		b[0] = byte(n) & 0x3f
		out = append(out, b)
	}
	header := func(n, declared int, cookie uint32) []byte {
		b := make([]byte, n)
		binary.BigEndian.PutUint16(b[0:2], 0x0001) // Binding request
		binary.BigEndian.PutUint16(b[2:4], uint16(declared))
		binary.BigEndian.PutUint32(b[4:8], cookie)
		return b
	}
	out = append(out,
		header(20, 0, 0),                // no cookie
		header(64, 44, 0xdeadbeef),      // wrong cookie
		header(28, 4, stunMagicCookie),  // declares less than it holds
		header(28, 12, stunMagicCookie), // declares more
		header(26, 6, stunMagicCookie),  // not a multiple of 4
	)
	cd := make([]byte, 10)
	binary.BigEndian.PutUint16(cd[0:2], 0x4000)
	binary.BigEndian.PutUint16(cd[2:4], 100) // 100 bytes declared, 6 held
	out = append(out, cd, []byte{0x40, 0x01, 0x00})
	return out
}

// TestJunkCountedMalformed: junk from a client is dropped by the worker
// and counted as malformed — not queued for pion, not queue_full, not
// no_allocation — and a flood of it does not hold up a legitimate
// allocation and its round trips.
func TestJunkCountedMalformed(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	junk, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(r.udp))
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	set := junkDatagrams()
	reason := func(why string) float64 { return r.metric(t, "mediaedge_relay_drops_total", "cause", why) }

	// Counted one by one: bursts small enough for the socket buffer, and
	// the count compared once the worker has served all that was sent.
	sent := 0
	for round := 0; round < 20; round++ {
		for _, b := range set {
			if _, err := junk.Write(b); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		testutil.WaitFor(t, "junk counted", 10*time.Second, func() bool { return reason("malformed") >= float64(sent) })
	}
	time.Sleep(50 * time.Millisecond) // anything counted twice would show now
	if got := reason("malformed"); got != float64(sent) {
		t.Errorf("malformed = %v, want %d", got, sent)
	}
	for _, why := range []string{"queue_full", "no_allocation"} {
		if got := reason(why); got != 0 {
			t.Errorf("%s = %v, want 0", why, got)
		}
	}

	// A flood, bounded in count and time, while a client allocates.
	stop := make(chan struct{})
	flooded := make(chan int)
	go func() {
		n := 0
		deadline := time.Now().Add(10 * time.Second)
		for n < 200_000 && time.Now().Before(deadline) {
			select {
			case <-stop:
				flooded <- n
				return
			default:
			}
			junk.Write(set[n%len(set)])
			n++
		}
		flooded <- n
	}()
	// Let the flood build up before the client starts.
	base := reason("malformed")
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && reason("malformed") < base+20_000; {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		close(stop)
		<-flooded
		t.Fatalf("Allocate under a junk flood: %v", err)
	}
	defer rc.Close()
	roundTrip(t, rc, peer.LocalAddr(), []byte("through the flood"))
	took := time.Since(start)
	close(stop)
	n := <-flooded
	t.Logf("allocation and a round trip took %v with %d junk datagrams sent", took, n)
	if took > 5*time.Second {
		t.Errorf("allocation and a round trip took %v under a junk flood", took)
	}
	if got := reason("queue_full"); got != 0 {
		t.Errorf("queue_full = %v after the flood, want 0", got)
	}
}
