package fastpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
)

// inFreshNetns runs fn on a locked OS thread inside a new network namespace
// whose loopback is up; sockets fn opens stay in that namespace.
func inFreshNetns(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fastpath: kernel test needs root (new netns, CAP_BPF, CAP_NET_ADMIN)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netns.Get: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("netns.New: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("restoring netns: %v", err)) // thread would stay in a dead netns
		}
		ns.Close()
	}()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo: %v", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("lo up: %v", err)
	}
	fn()
}

func channelData(ch uint16, payload []byte) []byte {
	n := len(payload)
	padded := (n + 3) &^ 3
	b := make([]byte, 4+padded)
	binary.BigEndian.PutUint16(b[0:], ch)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[4:], payload)
	return b
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrPort(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// echo answers every datagram to its sender until c is closed.
func echo(c *net.UDPConn, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// TestForwarderRoundTrips sends ChannelData over 32 channels through the
// program at lo ingress to UDP echo peers and checks every reply (payload,
// order, no loss), the per-entry counters, and that a removed entry sends
// traffic back to user space at once.
// It runs once attached with tcx and once with the clsact fallback.
func TestForwarderRoundTrips(t *testing.T) {
	for _, mode := range []string{"tcx", "clsact"} {
		t.Run(mode, func(t *testing.T) { testRoundTrips(t, mode == "clsact") })
	}
}

// refuseTCX stands in for a kernel without tcx.
func refuseTCX(link.TCXOptions) (link.Link, error) { return nil, ebpf.ErrNotSupported }

func testRoundTrips(t *testing.T, clsact bool) {
	defer goleak.VerifyNone(t)
	inFreshNetns(t, func() {
		f, err := New()
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer f.Close()
		if clsact {
			f.attachTCX = refuseTCX
		}
		lo, _ := netlink.LinkByName("lo")
		if err := f.Attach(lo.Attrs().Index); err != nil {
			t.Fatalf("Attach: %v", err)
		}

		const channels, rounds = 32, 20
		listener := listen(t) // the relay's listener: gets only what the kernel does not forward
		type leg struct {
			client, relay, peer *net.UDPConn
			e                   Entry
		}
		legs := make([]leg, channels)
		var dones []chan struct{}
		for i := range legs {
			l := leg{client: listen(t), relay: listen(t), peer: listen(t)}
			done := make(chan struct{})
			dones = append(dones, done)
			go echo(l.peer, done)
			l.e = Entry{
				Client: addrPort(l.client), Listener: addrPort(listener),
				Relay: addrPort(l.relay), Peer: addrPort(l.peer),
				Channel: uint16(0x4000 + i), Mark: 0x77,
			}
			if err := f.Add(l.e); err != nil {
				t.Fatalf("Add: %v", err)
			}
			legs[i] = l
		}
		defer func() {
			for i, l := range legs {
				l.peer.Close()
				<-dones[i]
			}
		}()

		var sentBytes uint64
		buf := make([]byte, 2048)
		for r := range rounds {
			for i, l := range legs {
				// Sizes 1..1100 exercise zero to three bytes of padding.
				payload := make([]byte, 1+(r*73+i)%1100)
				for k := range payload {
					payload[k] = byte(r*7 + i*3 + k)
				}
				sentBytes += uint64(len(payload))
				if _, err := l.client.WriteToUDPAddrPort(channelData(l.e.Channel, payload), l.e.Listener); err != nil {
					t.Fatalf("send: %v", err)
				}
				_ = l.client.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := l.client.ReadFromUDPAddrPort(buf)
				if err != nil {
					c, _ := f.Counters(l.e)
					t.Fatalf("channel %#x round %d: no reply: %v (counters %+v)", l.e.Channel, r, err, c)
				}
				if from != l.e.Listener {
					t.Fatalf("reply from %v, want the listener %v", from, l.e.Listener)
				}
				want := channelData(l.e.Channel, payload)[:4+len(payload)]
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("channel %#x round %d: got %d bytes %x..., want %d bytes %x...",
						l.e.Channel, r, n, buf[:min(n, 8)], len(want), want[:min(len(want), 8)])
				}
			}
		}

		var total Counters
		for _, l := range legs {
			c, err := f.Counters(l.e)
			if err != nil {
				t.Fatalf("Counters: %v", err)
			}
			if c.ToPeerPackets != rounds || c.ToClientPackets != rounds {
				t.Errorf("channel %#x counters %+v, want %d packets each way", l.e.Channel, c, rounds)
			}
			total.ToPeerBytes += c.ToPeerBytes
			total.ToClientBytes += c.ToClientBytes
		}
		if total.ToPeerBytes != sentBytes || total.ToClientBytes != sentBytes {
			t.Errorf("byte counters %+v, want %d each way", total, sentBytes)
		}

		// The batched read gives every entry's counters as the lookups did,
		// twice in a row with the same memory (and forgets a removed entry,
		// below).
		var snap Snapshot
		for pass := 0; pass < 2; pass++ {
			if err := f.Snapshot(&snap); err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if snap.Len() != len(legs) {
				t.Fatalf("snapshot has %d entries, want %d", snap.Len(), len(legs))
			}
			for _, l := range legs {
				want, _ := f.Counters(l.e)
				got, ok := snap.Counters(l.e)
				if !ok || got != want {
					t.Fatalf("channel %#x: snapshot %+v (found %v), lookups %+v", l.e.Channel, got, ok, want)
				}
			}
		}

		// The relay socket and the listener saw nothing: all went in the kernel.
		_ = listener.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := listener.ReadFromUDPAddrPort(buf); !isTimeout(err) {
			t.Fatalf("listener got a datagram while every channel was in the kernel: %v", err)
		}

		// Remove one entry: its next ChannelData reaches user space unchanged.
		l := legs[0]
		if c, err := f.Remove(l.e); err != nil || c.ToPeerPackets != rounds || c.ToClientPackets != rounds {
			t.Fatalf("Remove = %+v, %v; want %d packets each way", c, err, rounds)
		}
		if c, err := f.Remove(l.e); err != nil || c != (Counters{}) {
			t.Fatalf("second Remove = %+v, %v; want zero counters, no error", c, err)
		}
		if err := f.Snapshot(&snap); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if _, ok := snap.Counters(l.e); ok || snap.Len() != len(legs)-1 {
			t.Fatalf("removed entry still in the snapshot (%d entries)", snap.Len())
		}
		msg := channelData(l.e.Channel, []byte("after removal"))
		if _, err := l.client.WriteToUDPAddrPort(msg, l.e.Listener); err != nil {
			t.Fatalf("send: %v", err)
		}
		_ = listener.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := listener.ReadFromUDPAddrPort(buf)
		if err != nil || from != l.e.Client || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("after Remove the listener got %x from %v (%v), want %x from %v", buf[:n], from, err, msg, l.e.Client)
		}
		// And a peer datagram to the relay address reaches the relay socket.
		if _, err := l.peer.WriteToUDPAddrPort([]byte("late"), l.e.Relay); err != nil {
			t.Fatalf("peer send: %v", err)
		}
		_ = l.relay.SetReadDeadline(time.Now().Add(time.Second))
		if n, _, err := l.relay.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "late" {
			t.Fatalf("after Remove the relay socket got %q (%v), want %q", buf[:n], err, "late")
		}

		if err := f.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		// Detached: a still-listed channel reaches user space too.
		l = legs[1]
		if _, err := l.client.WriteToUDPAddrPort(channelData(l.e.Channel, []byte("x")), l.e.Listener); err != nil {
			t.Fatalf("send: %v", err)
		}
		_ = listener.SetReadDeadline(time.Now().Add(time.Second))
		if _, from, err := listener.ReadFromUDPAddrPort(buf); err != nil || from != l.e.Client {
			t.Fatalf("after Close the listener got nothing from %v: %v", l.e.Client, err)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ourFilters lists the clsact filters at our priority on lo ingress.
func ourFilters(t *testing.T) []*netlink.BpfFilter {
	t.Helper()
	lo, _ := netlink.LinkByName("lo")
	fs, err := netlink.FilterList(lo, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		t.Fatalf("FilterList: %v", err)
	}
	var out []*netlink.BpfFilter
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Priority == clsactPrio {
			out = append(out, bf)
		}
	}
	return out
}

// TestClsactReplacesStale: without tcx, a second run's Attach replaces the
// filter a first (killed) run left, leaving exactly one, and the first
// run's late Close does not remove the second's.
func TestClsactReplacesStale(t *testing.T) {
	inFreshNetns(t, func() {
		lo, _ := netlink.LinkByName("lo")
		var fs [2]*Forwarder
		for i := range fs {
			f, err := New()
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer f.Close()
			f.attachTCX = refuseTCX
			if err := f.Attach(lo.Attrs().Index); err != nil {
				t.Fatalf("Attach %d: %v", i, err)
			}
			fs[i] = f
		}
		info, err := fs[1].objs.TurnfwdIngress.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		got := ourFilters(t)
		if len(got) != 1 || got[0].Id != int(id) {
			t.Fatalf("filters after the second Attach: %+v, want exactly one running program %d", got, id)
		}
		if err := fs[0].Close(); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if got := ourFilters(t); len(got) != 1 || got[0].Id != int(id) {
			t.Fatalf("the first run's Close removed the second's filter: %+v", got)
		}
		if err := fs[1].Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if got := ourFilters(t); len(got) != 0 {
			t.Fatalf("filters left after Close: %+v", got)
		}
	})
}
