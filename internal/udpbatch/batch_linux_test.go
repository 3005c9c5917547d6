package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// datagram returns a datagram of n bytes that tells its index apart.
func datagram(i, n int) []byte {
	p := make([]byte, n)
	for j := range p {
		p[j] = byte(i*7 + j)
	}
	return p
}

// recvAll reads n datagrams from fd with rb, waiting at most 2 s, and
// returns copies with their sources.
func recvAll(tb testing.TB, rb *RecvBatch, fd, n, bufSize int) ([][]byte, []netip.AddrPort) {
	tb.Helper()
	bufs := make([][]byte, rb.Cap())
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	var got [][]byte
	var from []netip.AddrPort
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < n {
		k, err := rb.Recv(fd, bufs[:min(len(bufs), n-len(got))])
		if errors.Is(err, unix.EAGAIN) {
			if time.Now().After(deadline) {
				tb.Fatalf("received %d of %d datagrams", len(got), n)
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			_, _ = unix.Poll(pfd, 100)
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		for i := 0; i < k; i++ {
			if rb.Truncated(i) {
				tb.Errorf("datagram %d truncated", len(got))
			}
			got = append(got, bytes.Clone(bufs[i][:rb.Size(i)]))
			from = append(from, rb.Addr(i))
		}
	}
	return got, from
}

// TestSendRecv sends a batch of mixed sizes with SendAll and reads it back
// with RecvBatch, over IPv4, IPv6 and between a dual-stack IPv6 socket and
// an IPv4 one, with and without UDP GSO: every datagram arrives intact, in
// order, from the sender's address (IPv4, not IPv4-mapped).
func TestSendRecv(t *testing.T) {
	sizes := []int{160, 160, 160, 100, 1200, 1200, 33, 0, 160}
	for _, tc := range []struct {
		name       string
		a, b       string // sender and receiver bind addresses
		dual       bool   // a is dual-stack
		to, source string // b's and a's addresses as seen by the other (port added)
	}{
		{name: "ipv4", a: "127.0.0.1:0", b: "127.0.0.1:0", to: "127.0.0.1", source: "127.0.0.1"},
		{name: "ipv6", a: "[::1]:0", b: "[::1]:0", to: "::1", source: "::1"},
		{name: "dual-stack to ipv4", a: "[::]:0", dual: true, b: "127.0.0.1:0", to: "127.0.0.1", source: "127.0.0.1"},
	} {
		for _, gso := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/gso=%v", tc.name, gso), func(t *testing.T) {
				afd, al := rawSock(t, tc.a, sockopt.Options{}, tc.dual)
				bfd, bl := rawSock(t, tc.b, sockopt.Options{}, false)
				dst := netip.AddrPortFrom(netip.MustParseAddr(tc.to), bl.Port())
				src := netip.AddrPortFrom(netip.MustParseAddr(tc.source), al.Port())
				sb := NewSendBatch(16)
				sb.Reset(al.Addr().Is6(), gso)
				for i, n := range sizes {
					if err := sb.Add(datagram(i, n), dst); err != nil {
						t.Fatalf("Add %d: %v", i, err)
					}
				}
				wantMsgs := len(sizes)
				if gso {
					wantMsgs = 4 // [160 160 160 100] [1200 1200 33] [0] [160]
				}
				if sb.Len() != wantMsgs {
					t.Fatalf("%d messages, want %d", sb.Len(), wantMsgs)
				}
				if err := sb.SendAll(afd, func(first, n int) { t.Errorf("datagrams %d+%d dropped", first, n) }); err != nil {
					t.Fatalf("SendAll: %v", err)
				}
				if msgs, segs := sb.TakeGSOCounts(); gso && (msgs != 2 || segs != 7) || !gso && msgs+segs != 0 {
					t.Errorf("GSO counts %d messages, %d datagrams", msgs, segs)
				}
				got, from := recvAll(t, NewRecvBatch(4), bfd, len(sizes), 2048)
				for i, n := range sizes {
					if !bytes.Equal(got[i], datagram(i, n)) {
						t.Errorf("datagram %d: %d bytes, want %d as sent", i, len(got[i]), n)
					}
					if from[i] != src {
						t.Errorf("datagram %d from %s, want %s", i, from[i], src)
					}
				}
				// And back: the reply's source reads as IPv4 on a
				// dual-stack socket.
				sb2 := NewSendBatch(1)
				sb2.Reset(bl.Addr().Is6(), gso)
				if err := sb2.Add([]byte("reply"), src); err != nil {
					t.Fatal(err)
				}
				if n, err := sb2.Send(bfd, 0); n != 1 || err != nil {
					t.Fatalf("Send = %d, %v", n, err)
				}
				got, from = recvAll(t, NewRecvBatch(1), afd, 1, 2048)
				if string(got[0]) != "reply" || from[0] != dst {
					t.Errorf("reply %q from %s, want from %s", got[0], from[0], dst)
				}
			})
		}
	}
}

// TestRecvNothingWaiting: an empty socket reports EAGAIN, so the caller's
// event loop waits; no buffers reads nothing.
func TestRecvNothingWaiting(t *testing.T) {
	fd, _ := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	rb := NewRecvBatch(4)
	if n, err := rb.Recv(fd, [][]byte{make([]byte, 100)}); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Errorf("Recv on an empty socket = %d, %v; want EAGAIN", n, err)
	}
	if n, err := rb.Recv(fd, nil); n != 0 || err != nil {
		t.Errorf("Recv without buffers = %d, %v", n, err)
	}
	if n, err := rb.Recv(-1, [][]byte{make([]byte, 100)}); n != 0 || !errors.Is(err, unix.EBADF) {
		t.Errorf("Recv on a bad descriptor = %d, %v; want EBADF", n, err)
	}
}

// TestRecvTruncated: a datagram longer than its buffer is reported
// truncated, with the buffer's size; the next one is whole.
func TestRecvTruncated(t *testing.T) {
	afd, _ := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	bfd, bl := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	sb := NewSendBatch(2)
	sb.Reset(false, false)
	_ = sb.Add(datagram(0, 1200), bl)
	_ = sb.Add(datagram(1, 100), bl)
	if n, err := sb.Send(afd, 0); n != 2 || err != nil {
		t.Fatalf("Send = %d, %v", n, err)
	}
	rb := NewRecvBatch(2)
	bufs := [][]byte{make([]byte, 100), make([]byte, 100)}
	n, err := rb.Recv(bfd, bufs)
	if n != 2 || err != nil {
		t.Fatalf("Recv = %d, %v", n, err)
	}
	if !rb.Truncated(0) || rb.Size(0) != 100 || !bytes.Equal(bufs[0], datagram(0, 1200)[:100]) {
		t.Errorf("datagram 0: truncated %v, size %d", rb.Truncated(0), rb.Size(0))
	}
	if rb.Truncated(1) || rb.Size(1) != 100 || !bytes.Equal(bufs[1], datagram(1, 100)) {
		t.Errorf("datagram 1: truncated %v, size %d", rb.Truncated(1), rb.Size(1))
	}
}

// TestSendAllRefusedMidBatch: a destination the kernel refuses (the
// broadcast address without SO_BROADCAST: EACCES) costs its own datagrams
// only; the ones before and after it are sent, in order.
func TestSendAllRefusedMidBatch(t *testing.T) {
	bcast := netip.MustParseAddrPort("255.255.255.255:9")
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			afd, _ := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
			bfd, bl := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
			dsts := []netip.AddrPort{bl, bl, bcast, bcast, bl, bl}
			sb := NewSendBatch(8)
			sb.Reset(false, gso)
			for i, d := range dsts {
				if err := sb.Add(datagram(i, 160), d); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := sb.Send(afd, 0); !errors.Is(err, unix.EACCES) || sb.First(n) != 2 {
				t.Fatalf("Send = %d, %v; want to stop at datagram 2 with EACCES", n, err)
			}
			var dropped []string
			if err := sb.SendAll(afd, func(first, n int) { dropped = append(dropped, fmt.Sprintf("%d+%d", first, n)) }); err != nil {
				t.Fatalf("SendAll: %v", err)
			}
			want := "[2+1 3+1]"
			if gso {
				want = "[2+2]"
			}
			if fmt.Sprint(dropped) != want {
				t.Errorf("dropped %v, want %s", dropped, want)
			}
			got, _ := recvAll(t, NewRecvBatch(8), bfd, 2+4, 2048) // the first Send's two, then SendAll's four
			for i, want := range []int{0, 1, 0, 1, 4, 5} {
				if !bytes.Equal(got[i], datagram(want, 160)) {
					t.Errorf("datagram %d is not the %d-th sent", i, want)
				}
			}
		})
	}
}
