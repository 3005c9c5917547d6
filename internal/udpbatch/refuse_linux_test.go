package udpbatch

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestSendAllGSORefused: a socket without UDP checksums (SO_NO_CHECK)
// cannot send UDP GSO messages; the kernel refuses them with EINVAL.
// SendAll sends the refused message and the later ones one datagram per
// message, in order, and reports the error.
func TestSendAllGSORefused(t *testing.T) {
	afd, _ := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	bfd, bl := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	if err := unix.SetsockoptInt(afd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
		t.Skipf("SO_NO_CHECK: %v", err)
	}
	sizes := []int{100, 160, 160, 160, 120, 120, 200, 80}
	dsts := []netip.AddrPort{bl, bl, bl, bl, bl, {}, bl, bl}
	sb := NewSendBatch(8)
	sb.Reset(false, true)
	for i, d := range dsts {
		if err := sb.Add(datagram(i, sizes[i]), d); (err == nil) != d.IsValid() {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	if got := batchShape(sb); got != "[0+1 1+4 6+2]" {
		t.Fatalf("messages %s", got)
	}
	err := sb.SendAll(afd, func(first, n int) { t.Errorf("datagrams %d+%d dropped", first, n) })
	if !GSORefused(err) || !errors.Is(err, unix.EINVAL) {
		t.Fatalf("SendAll: %v, want EINVAL", err)
	}
	if got := batchShape(sb); got != "[0+1 1+1 2+1 3+1 4+1 6+1 7+1]" {
		t.Errorf("messages after the refusal %s", got)
	}
	sizes = append(sizes[:5], sizes[6:]...) // the datagram without destination
	got, _ := recvAll(t, NewRecvBatch(8), bfd, len(sizes), 2048)
	for i, n := range sizes {
		if j := i + i/5; !bytes.Equal(got[i], datagram(j, n)) {
			t.Errorf("datagram %d: %d bytes, want datagram %d as sent", i, len(got[i]), j)
		}
	}
}

// TestSendAllBufferFull: when the send buffer is full (EAGAIN), Send
// stops and SendAll drops the rest of the batch rather than wait. The
// buffer fills for real: in a network namespace of the test's own, a
// token bucket on lo holds the datagrams, and the socket's send buffer
// with them.
func TestSendAllBufferFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN for a network namespace, CAP_NET_ADMIN for a qdisc)")
	}
	afd, dst := inThrottledNetns(t)
	const count = 64
	sb := NewSendBatch(count)
	sb.Reset(false, false)
	for i := 0; i < count; i++ {
		if err := sb.Add(datagram(i, 1000), dst); err != nil {
			t.Fatal(err)
		}
	}
	n, err := sb.Send(afd, 0)
	if !errors.Is(err, unix.EAGAIN) || n == 0 || n == count {
		t.Fatalf("Send = %d, %v; want some sent, then EAGAIN", n, err)
	}
	// Everything from the first message that did not fit is dropped, in
	// order, and reported once.
	next := 0
	err = sb.SendAll(afd, func(first, k int) {
		if first != next && next != 0 || k != 1 {
			t.Errorf("dropped %d+%d after %d", first, k, next)
		}
		next = first + k
	})
	if err != nil || next != count {
		t.Fatalf("SendAll: %v; last dropped %d", err, next)
	}
}

// inThrottledNetns opens a socket in a new network namespace whose lo
// sends 8 kbit/s with a deep queue, and returns it with a destination on
// lo. The namespace has no name and goes with the socket.
func inThrottledNetns(t *testing.T) (fd int, dst netip.AddrPort) {
	testutil.InNetns(t, func(lo netlink.Link) {
		const rate = 1000 // bytes per second
		q := &netlink.Tbf{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
			Rate:       rate,
			Limit:      10 << 20,
			Buffer:     netlink.Xmittime(rate, 1600),
		}
		if err := netlink.QdiscAdd(q); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
				t.Skipf("tbf qdisc: %v", err)
			}
			t.Fatal(err)
		}
		fd, _ = rawSock(t, "127.0.0.1:0", sockopt.Options{SendBuffer: 16 << 10}, false)
	})
	return fd, netip.MustParseAddrPort("127.0.0.1:9")
}
