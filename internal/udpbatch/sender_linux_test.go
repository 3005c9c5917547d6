package udpbatch

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// TestSenderFailures: a datagram the kernel refuses (broadcast without
// SO_BROADCAST: EACCES) or whose destination the socket's family cannot
// reach is reported by its index, across batch boundaries (ErrBatchFull),
// and the others arrive in order.
func TestSenderFailures(t *testing.T) {
	afd, _ := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	bfd, bl := rawSock(t, "127.0.0.1:0", sockopt.Options{RecvBuffer: 1 << 20}, false)
	bcast := netip.MustParseAddrPort("255.255.255.255:9")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:9")
	dsts := []netip.AddrPort{bl, bl, bcast, bl, v6, bl, bl, bl, bcast, bl}
	bufs := make([][]byte, len(dsts))
	for i := range bufs {
		bufs[i] = datagram(i, 100)
	}
	g := NewGSO()
	s := NewSender(3, g) // batches of three: the failures straddle them
	var failed []int
	n, err := s.Send(afd, false, bufs, dsts, func(i int) { failed = append(failed, i) })
	if n != 3 || err != nil || !slices.Equal(failed, []int{2, 4, 8}) {
		t.Fatalf("Send = %d, %v, failed %v; want 3, nil, [2 4 8]", n, err, failed)
	}
	got, _ := recvAll(t, NewRecvBatch(16), bfd, 7, 2048)
	for k, i := range []int{0, 1, 3, 5, 6, 7, 9} {
		if !bytes.Equal(got[k], bufs[i]) {
			t.Errorf("datagram %d: got % x..., want datagram %d", k, got[k][:4], i)
		}
	}
}

// TestSenderGSORefused: a socket without UDP checksums (SO_NO_CHECK)
// has every UDP GSO message refused with EINVAL. Each Send still delivers
// every datagram; the first refusals keep the shared switch on, and the
// Send that finds the refusals persistent turns it off and is the only
// one to return ErrGSODisabled.
func TestSenderGSORefused(t *testing.T) {
	if !GSOSupported() {
		t.Skip("the kernel has no UDP GSO")
	}
	afd, _ := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	bfd, bl := rawSock(t, "127.0.0.1:0", sockopt.Options{RecvBuffer: 4 << 20}, false)
	if err := unix.SetsockoptInt(afd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
		t.Skipf("SO_NO_CHECK: %v", err)
	}
	g := NewGSO()
	s := NewSender(8, g)
	bufs := [][]byte{datagram(0, 160), datagram(1, 160), datagram(2, 160), datagram(3, 160)}
	dsts := []netip.AddrPort{bl, bl, bl, bl}
	rb := NewRecvBatch(8)
	var errs []error
	for call := 1; call <= 2*gsoStrikes; call++ {
		n, err := s.Send(afd, false, bufs, dsts, nil)
		if n != 0 {
			t.Fatalf("call %d: %d not sent", call, n)
		}
		if err != nil {
			errs = append(errs, err)
			if call != gsoStrikes {
				t.Errorf("GSO turned off at call %d, want %d", call, gsoStrikes)
			}
		}
		got, _ := recvAll(t, rb, bfd, len(bufs), 2048)
		for i := range bufs {
			if !bytes.Equal(got[i], bufs[i]) {
				t.Fatalf("call %d, datagram %d: %d bytes, want it as sent", call, i, len(got[i]))
			}
		}
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrGSODisabled) || !errors.Is(errs[0], unix.EINVAL) || g.Enabled() {
		t.Errorf("errors %v, GSO on %v; want one ErrGSODisabled (EINVAL) and off", errs, g.Enabled())
	}
}

// TestSenderNoAlloc: a Send allocates nothing.
func TestSenderNoAlloc(t *testing.T) {
	afd, _ := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	_, bl := rawSock(t, "127.0.0.1:0", sockopt.Options{}, false)
	s := NewSender(8, NewGSO())
	bufs := [][]byte{datagram(0, 160), datagram(1, 160), datagram(2, 100)}
	dsts := []netip.AddrPort{bl, bl, bl}
	count := 0
	failed := func(int) { count++ }
	if a := testing.AllocsPerRun(100, func() { s.Send(afd, false, bufs, dsts, failed) }); a != 0 {
		t.Errorf("%v allocations per Send, want 0", a)
	}
}
