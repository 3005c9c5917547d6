package udpbatch

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// checksumRef is RFC 1071's algorithm as written: 16-bit words, carries
// folded at the end.
func checksumRef(b []byte, sum uint64) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestChecksum(t *testing.T) {
	// RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
	if got := checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != ^uint16(0xddf2) {
		t.Fatalf("RFC 1071 example: %04x, want %04x", got, ^uint16(0xddf2))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if n%7 == 0 {
			for i := range b {
				b[i] = 0xff // the most carries
			}
		}
		pseudo := uint64(rng.Uint32()) + uint64(rng.Uint32()) + 17 + uint64(n)
		if got, want := checksum(b, pseudo), checksumRef(b, pseudo); got != want {
			t.Fatalf("%d bytes: %04x, want %04x", n, got, want)
		}
	}
}

// openRaw opens a RawSender or skips the test without CAP_NET_RAW.
func openRaw(tb testing.TB, o sockopt.Options, n int) *RawSender {
	tb.Helper()
	r, err := OpenRaw(o, n)
	if errors.Is(err, unix.EPERM) {
		tb.Skipf("raw socket: %v (needs CAP_NET_RAW)", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// TestRawSenderDelivers: datagrams sent from the address and port of
// other sockets reach a real UDP socket (which verifies the checksum)
// with their payload and that source, in order.
func TestRawSenderDelivers(t *testing.T) {
	r := openRaw(t, sockopt.Options{}, 4)
	_, srcA := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	_, srcB := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	rfd, dst := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	sizes := []int{160, 0, 1, 33, 1200, RawMaxPayload, 7}
	srcs := []netip.AddrPort{srcA, srcB, srcA, srcB, srcA, srcB, srcA}
	for i, n := range sizes {
		err := r.Add(srcs[i], dst, datagram(i, n))
		if errors.Is(err, ErrBatchFull) {
			if lost := r.Send(nil); lost != 0 {
				t.Fatalf("%d datagrams not sent", lost)
			}
			err = r.Add(srcs[i], dst, datagram(i, n))
		}
		if err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	if lost := r.Send(func(i int, err unix.Errno) { t.Errorf("datagram %d: %v", i, err) }); lost != 0 || r.Len() != 0 {
		t.Fatalf("Send lost %d, left %d", lost, r.Len())
	}
	got, from := recvAll(t, NewRecvBatch(8), rfd, len(sizes), 2048)
	for i, n := range sizes {
		if !bytes.Equal(got[i], datagram(i, n)) || from[i] != srcs[i] {
			t.Errorf("datagram %d: %d bytes from %s, want %d from %s", i, len(got[i]), from[i], n, srcs[i])
		}
	}
}

// TestRawSenderBadChecksumDropped shows that the receiving socket checks
// the checksum TestRawSenderDelivers relies on: a datagram whose checksum
// is off by one never arrives, while the next, intact, does.
func TestRawSenderBadChecksumDropped(t *testing.T) {
	r := openRaw(t, sockopt.Options{}, 2)
	_, src := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	rfd, dst := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	for i := 0; i < 2; i++ {
		if err := r.Add(src, dst, datagram(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	r.bufs[0][rawHeader-1] ^= 1 // the low byte of the UDP checksum
	if lost := r.Send(nil); lost != 0 {
		t.Fatalf("%d not sent", lost)
	}
	got, _ := recvAll(t, NewRecvBatch(2), rfd, 1, 2048)
	if !bytes.Equal(got[0], datagram(1, 100)) {
		t.Fatalf("received %d bytes, want the intact datagram 1", len(got[0]))
	}
	if n, err := NewRecvBatch(2).Recv(rfd, [][]byte{make([]byte, 2048)}); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("the corrupted datagram arrived too (%d, %v)", n, err)
	}
}

func TestRawSenderAddRefuses(t *testing.T) {
	r := openRaw(t, sockopt.Options{}, 1)
	v4, v6 := netip.MustParseAddrPort("127.0.0.1:5004"), netip.MustParseAddrPort("[::1]:5004")
	mapped := netip.MustParseAddrPort("[::ffff:127.0.0.1]:5006")
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		n        int
		want     error
	}{
		{"IPv6 source", v6, v4, 10, ErrRawSource},
		{"IPv6 destination", v4, v6, 10, ErrRawSource},
		{"unspecified source", netip.MustParseAddrPort("0.0.0.0:5004"), v4, 10, ErrRawSource},
		{"no destination", v4, netip.AddrPort{}, 10, ErrRawSource},
		{"too long", v4, v4, RawMaxPayload + 1, ErrRawTooLong},
		{"IPv4-mapped", mapped, v4, 10, nil},
		{"full", v4, v4, 10, ErrBatchFull},
	}
	for _, tt := range tests {
		if err := r.Add(tt.src, tt.dst, make([]byte, tt.n)); !errors.Is(err, tt.want) || (err != nil) != (tt.want != nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if r.Len() != 1 || len(r.Payload(0)) != 10 {
		t.Fatalf("Len %d, payload %d bytes; want the one IPv4-mapped datagram", r.Len(), len(r.Payload(0)))
	}
}

// TestRawSenderRefusedMidBatch: in a network namespace with only lo, a
// datagram to an address without route fails (ENETUNREACH); it is
// reported with its index and payload, and the datagrams around it go.
func TestRawSenderRefusedMidBatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN for a network namespace, CAP_NET_RAW)")
	}
	var (
		r   *RawSender
		rfd int
		dst netip.AddrPort
		src netip.AddrPort
	)
	testutil.InNetns(t, func(netlink.Link) {
		r = openRaw(t, sockopt.Options{}, 4)
		rfd, dst = rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
		_, src = rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	})
	nowhere := netip.MustParseAddrPort("192.0.2.1:9")
	for i, d := range []netip.AddrPort{dst, nowhere, dst, nowhere} {
		if err := r.Add(src, d, datagram(i, 50)); err != nil {
			t.Fatal(err)
		}
	}
	var failed []int
	lost := r.Send(func(i int, err unix.Errno) {
		if err != unix.ENETUNREACH || !bytes.Equal(r.Payload(i), datagram(i, 50)) {
			t.Errorf("datagram %d: %v, payload %d bytes", i, err, len(r.Payload(i)))
		}
		failed = append(failed, i)
	})
	if lost != 2 || len(failed) != 2 || failed[0] != 1 || failed[1] != 3 {
		t.Fatalf("lost %d: %v, want datagrams 1 and 3", lost, failed)
	}
	got, _ := recvAll(t, NewRecvBatch(4), rfd, 2, 2048)
	for i, k := range []int{0, 2} {
		if !bytes.Equal(got[i], datagram(k, 50)) {
			t.Errorf("received %d: not datagram %d", i, k)
		}
	}
}

// TestRawSenderMark: the mark steers raw packets as it does a socket's
// (split tunnelling by policy routing). In a network namespace whose only
// route to 198.51.100.0/24 is in a table that the mark selects, a marked
// datagram finds a route and an unmarked one does not (ENETUNREACH);
// SetMark changes the mark, to zero too.
func TestRawSenderMark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN for a network namespace, CAP_NET_ADMIN for SO_MARK)")
	}
	const mark, table = 0x4d45, 100
	var r *RawSender
	testutil.InNetns(t, func(netlink.Link) {
		rule := netlink.NewRule()
		rule.Mark, rule.Table = mark, table
		if err := netlink.RuleAdd(rule); err != nil {
			t.Fatalf("ip rule: %v", err)
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		dst := netip.MustParsePrefix("198.51.100.0/24")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Table: table,
			Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatalf("ip route: %v", err)
		}
		r = openRaw(t, sockopt.Options{Mark: mark}, 1)
	})
	src, dst := netip.MustParseAddrPort("127.0.0.1:5004"), netip.MustParseAddrPort("198.51.100.1:5004")
	send := func() unix.Errno {
		if err := r.Add(src, dst, make([]byte, 20)); err != nil {
			t.Fatal(err)
		}
		var got unix.Errno
		r.Send(func(_ int, err unix.Errno) { got = err })
		return got
	}
	if err := send(); err != 0 {
		t.Fatalf("marked: %v, want sent", err)
	}
	if err := r.SetMark(0); err != nil {
		t.Fatal(err)
	}
	if err := send(); err != unix.ENETUNREACH {
		t.Fatalf("unmarked: %v, want ENETUNREACH", err)
	}
	if err := r.SetMark(mark); err != nil {
		t.Fatal(err)
	}
	if err := send(); err != 0 {
		t.Fatalf("marked again: %v, want sent", err)
	}
}

func TestRawSenderNoAlloc(t *testing.T) {
	r := openRaw(t, sockopt.Options{}, 8)
	_, src := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	_, dst := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	p := make([]byte, 160)
	failed := func(int, unix.Errno) {}
	allocs := testing.AllocsPerRun(100, func() {
		for range 8 {
			_ = r.Add(src, dst, p)
		}
		r.Send(failed)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}

// BenchmarkRawSend measures adding and sending 32 datagrams of 160 bytes
// from 32 sources. The receiver does not read: its queue overflows and the
// kernel drops what arrives, at the same cost each time.
func BenchmarkRawSend(b *testing.B) {
	r := openRaw(b, sockopt.Options{}, 32)
	_, dst := rawSock(b, "127.0.0.1:0", sockopt.Options{}, false)
	srcs := make([]netip.AddrPort, 32)
	for i := range srcs {
		_, srcs[i] = rawSock(b, "127.0.0.1:0", sockopt.Options{}, false)
	}
	p := make([]byte, 160)
	b.SetBytes(160 * 32)
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range srcs {
			_ = r.Add(s, dst, p)
		}
		r.Send(nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/pkt")
}
