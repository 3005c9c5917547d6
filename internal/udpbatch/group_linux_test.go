package udpbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchShape renders a batch as its messages' first positions and
// datagram counts, e.g. "[0+3 3+1]".
func batchShape(b *SendBatch) string {
	s := make([]string, b.Len())
	for k := range s {
		s[k] = fmt.Sprintf("%d+%d", b.First(k), b.Segments(k))
	}
	return fmt.Sprint(s)
}

// gsoSize returns the UDP_SEGMENT size of message k, or 0 without one.
func gsoSize(b *SendBatch, k int) int {
	h := &b.hdrs[k].hdr
	if h.Control == nil {
		return 0
	}
	c := unsafe.Slice(h.Control, h.Controllen)
	cm := (*unix.Cmsghdr)(unsafe.Pointer(h.Control))
	if cm.Level != unix.SOL_UDP || cm.Type != unix.UDP_SEGMENT {
		return -1
	}
	return int(binary.NativeEndian.Uint16(c[unix.CmsgLen(0):]))
}

// TestGrouping checks how Add groups datagrams into UDP GSO messages: runs
// to one destination, of one size, where a shorter datagram may end a run,
// within the kernel's segment and byte limits; refused destinations take a
// position and split runs.
func TestGrouping(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:1000")
	b := netip.MustParseAddrPort("192.0.2.2:1000")
	a6 := netip.MustParseAddrPort("[2001:db8::1]:1000")
	a4in6 := netip.MustParseAddrPort("[::ffff:192.0.2.1]:1000")
	same := func(n, size int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = size
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		dsts  []netip.AddrPort // one per datagram; nil: all to a
		v6    bool
		gso   bool
		want  string
		full  int // Add calls refused with ErrBatchFull
	}{
		{name: "one datagram", sizes: []int{160}, gso: true, want: "[0+1]"},
		{name: "equal run", sizes: []int{160, 160, 160}, gso: true, want: "[0+3]"},
		{name: "shorter ends a run", sizes: []int{160, 160, 100, 160}, gso: true, want: "[0+3 3+1]"},
		{name: "longer starts a new run", sizes: []int{100, 160, 160}, gso: true, want: "[0+1 1+2]"},
		{name: "destinations split runs", sizes: same(4, 160), dsts: []netip.AddrPort{a, a, b, a}, gso: true, want: "[0+2 2+1 3+1]"},
		{name: "without gso", sizes: []int{160, 160}, want: "[0+1 1+1]"},
		{name: "segment limit", sizes: same(70, 100), gso: true, want: "[0+64 64+6]"},
		{name: "byte limit", sizes: same(60, 1204), gso: true, want: "[0+53 53+7]"},
		{name: "empty datagrams stand alone", sizes: []int{0, 0, 160, 160, 0}, gso: true, want: "[0+1 1+1 2+2 4+1]"},
		{name: "ipv6 destination on an ipv4 socket", sizes: same(5, 160), dsts: []netip.AddrPort{a, a, a6, a, a}, gso: true, want: "[0+2 3+2]"},
		{name: "no destination", sizes: same(3, 160), dsts: []netip.AddrPort{a, {}, a}, v6: true, gso: true, want: "[0+1 2+1]"},
		// Sent to a's IPv4 address, but grouped by the address as given.
		{name: "ipv4-mapped on an ipv4 socket", sizes: same(3, 160), dsts: []netip.AddrPort{a4in6, a4in6, a}, gso: true, want: "[0+2 2+1]"},
		{name: "ipv4 on an ipv6 socket", sizes: same(3, 160), dsts: []netip.AddrPort{a, a, a6}, v6: true, gso: true, want: "[0+2 2+1]"},
		{name: "batch full", sizes: same(10, 160), want: "[0+1 1+1 2+1 3+1 4+1 5+1 6+1 7+1]", full: 2},
		{name: "batch full with gso", sizes: same(10, 160), gso: true, want: "[0+8]", full: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capacity := 128
			if tc.full > 0 {
				capacity = 8
			}
			sb := NewSendBatch(capacity)
			sb.Reset(tc.v6, tc.gso)
			refused, full := 0, 0
			for i, n := range tc.sizes {
				d := a
				if tc.dsts != nil {
					d = tc.dsts[i]
				}
				switch err := sb.Add(make([]byte, n), d); {
				case err == nil:
				case errors.Is(err, ErrAddressFamily):
					refused++
				case errors.Is(err, ErrBatchFull):
					full++
				default:
					t.Fatalf("Add %d: %v", i, err)
				}
			}
			if got := batchShape(sb); got != tc.want {
				t.Errorf("messages %s, want %s", got, tc.want)
			}
			if full != tc.full || sb.Positions() != len(tc.sizes)-full {
				t.Errorf("%d full, %d positions", full, sb.Positions())
			}
			for k := 0; k < sb.Len(); k++ {
				size := tc.sizes[sb.First(k)]
				if got := gsoSize(sb, k); sb.Segments(k) > 1 && got != size || sb.Segments(k) == 1 && got != 0 {
					t.Errorf("message %d of %d datagrams: UDP_SEGMENT %d", k, sb.Segments(k), got)
				}
			}
			sb.Reset(false, false)
			for i := range sb.iovs {
				if sb.iovs[i].Base != nil {
					t.Fatalf("iovec %d still refers to a datagram after Reset", i)
				}
			}
		})
	}
}

// FuzzGrouping adds arbitrary runs of datagrams and checks the invariants
// of the messages built: consecutive positions, one destination, equal
// segments but for a shorter last one, the kernel's limits, a
// UDP_SEGMENT control message exactly on messages of several datagrams,
// and no run cut short without a reason. Then it ungroups the batch from
// a message on, as SendAll does when the kernel refuses GSO, and checks
// that every datagram from there is a message of its own, in order, with
// its buffer and destination.
func FuzzGrouping(f *testing.F) {
	f.Add([]byte{0x10, 0x10, 0x10, 0x08, 0x90}, true, false, uint8(1))
	f.Add([]byte{0, 0, 0x10, 0x10}, true, true, uint8(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xc0, 0x40}, false, true, uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, gso, v6 bool, cut uint8) {
		dsts := []netip.AddrPort{
			netip.MustParseAddrPort("192.0.2.1:1000"),
			netip.MustParseAddrPort("192.0.2.2:1000"),
			netip.MustParseAddrPort("[2001:db8::1]:1000"),
			{},
		}
		sb := NewSendBatch(48)
		sb.Reset(v6, gso)
		var sizes []int
		var to []netip.AddrPort
		var ok []bool
		var bufs [][]byte
		for _, c := range in {
			// The low 6 bits pick a size (×40, up to 2520 bytes: runs
			// reach the byte limit), the top 2 a destination.
			n, d := int(c&0x3f)*40, dsts[c>>6]
			p := make([]byte, n)
			err := sb.Add(p, d)
			if errors.Is(err, ErrBatchFull) {
				break
			}
			sizes, to, ok = append(sizes, n), append(to, d), append(ok, err == nil)
			bufs = append(bufs, p)
			if want := d.IsValid() && (v6 || d.Addr().Is4()); (err == nil) != want {
				t.Fatalf("Add(%s) on v6=%v: %v", d, v6, err)
			}
		}
		next := 0
		for k := 0; k < sb.Len(); k++ {
			first, segs := sb.First(k), sb.Segments(k)
			for next < first {
				if ok[next] {
					t.Fatalf("datagram %d added but in no message", next)
				}
				next++
			}
			size, total := sizes[first], 0
			for i := first; i < first+segs; i++ {
				if !ok[i] || to[i] != to[first] {
					t.Fatalf("message %d: datagram %d does not belong", k, i)
				}
				if segs > 1 && (sizes[i] == 0 || sizes[i] > size || sizes[i] < size && i != first+segs-1) {
					t.Fatalf("message %d: datagram %d of %d bytes after %d", k, i, sizes[i], size)
				}
				total += sizes[i]
			}
			if segs > gsoMaxSegments || segs > 1 && total > gsoMaxBytes || !gso && segs > 1 {
				t.Fatalf("message %d: %d datagrams, %d bytes", k, segs, total)
			}
			if got := gsoSize(sb, k); segs > 1 && got != size || segs == 1 && got != 0 {
				t.Fatalf("message %d: UDP_SEGMENT %d", k, got)
			}
			next = first + segs
			// Greedy: the next datagram had a reason to start a message.
			if gso && next < len(sizes) && ok[next] && to[next] == to[first] && sizes[next] > 0 &&
				sizes[next] <= size && sizes[next-1] == size && segs < gsoMaxSegments && total+sizes[next] <= gsoMaxBytes {
				t.Fatalf("message %d ended before datagram %d for no reason", k, next)
			}
		}
		for ; next < len(ok); next++ {
			if ok[next] {
				t.Fatalf("datagram %d added but in no message", next)
			}
		}

		k := int(cut) % (sb.Len() + 1)
		before := batchShape(sb)
		var kept [][2]int // messages before k
		var rest []int    // positions of the datagrams of messages k and later
		for m := 0; m < sb.Len(); m++ {
			if m < k {
				kept = append(kept, [2]int{sb.First(m), sb.Segments(m)})
				continue
			}
			for i := 0; i < sb.Segments(m); i++ {
				rest = append(rest, sb.First(m)+i)
			}
		}
		sb.ungroup(k)
		for m, want := range kept {
			if got := [2]int{sb.First(m), sb.Segments(m)}; got != want {
				t.Fatalf("ungroup(%d) of %s changed message %d to %v", k, before, m, got)
			}
		}
		if sb.Len() != k+len(rest) {
			t.Fatalf("ungroup(%d) of %s: %d messages, want %d", k, before, sb.Len(), k+len(rest))
		}
		for j, pos := range rest {
			m := k + j
			h := &sb.hdrs[m].hdr
			iov := unsafe.Slice(h.Iov, h.Iovlen)
			if sb.First(m) != pos || sb.Segments(m) != 1 || len(iov) != 1 || h.Control != nil {
				t.Fatalf("ungroup(%d) of %s: message %d is %d+%d with %d iovecs", k, before, m, sb.First(m), sb.Segments(m), len(iov))
			}
			if iov[0].Base != unsafe.SliceData(bufs[pos]) || int(iov[0].Len) != len(bufs[pos]) {
				t.Fatalf("ungroup(%d) of %s: message %d does not carry datagram %d", k, before, m, pos)
			}
			if got := parseSockaddr(&sb.names[m]); got != netip.AddrPortFrom(to[pos].Addr().Unmap(), to[pos].Port()) {
				t.Fatalf("ungroup(%d) of %s: message %d goes to %s, want %s", k, before, m, got, to[pos])
			}
		}
	})
}
