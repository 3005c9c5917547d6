package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(mustAddrPort(t, addr)))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustAddrPort(t testing.TB, s string) (ap netip.AddrPort) {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "udp4", "127.0.0.1:0"},
		{"ipv6", "udp6", "[::1]:0"},
		{"dual-stack to ipv4", "udp", "[::]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := listen(t, tc.network, tc.addr)
			dst := "127.0.0.1:0"
			if tc.network == "udp6" {
				dst = "[::1]:0"
			}
			b := listen(t, tc.network, dst)
			ca, cb := New(a, 8), New(b, 8)
			if ca.Mode() != ModeMmsg {
				t.Fatalf("mode = %s, want mmsg on Linux", ca.Mode())
			}
			to := mustAddrPort(t, b.LocalAddr().String())
			if tc.network == "udp" {
				to = mustAddrPort(t, fmt.Sprintf("127.0.0.1:%d", to.Port()))
			}
			out := make([]Message, 5)
			for i := range out {
				out[i] = Message{Buf: []byte(fmt.Sprintf("packet-%d", i)), Addr: to}
				out[i].N = len(out[i].Buf)
			}
			n, err := ca.WriteBatch(out)
			if err != nil || n != 5 {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			in := make([]Message, 8)
			for i := range in {
				in[i].Buf = make([]byte, 1500)
			}
			got := 0
			b.SetReadDeadline(time.Now().Add(2 * time.Second))
			for got < 5 {
				n, err := cb.ReadBatch(in[got:])
				if err != nil {
					t.Fatalf("ReadBatch after %d: %v", got, err)
				}
				for i := got; i < got+n; i++ {
					want := fmt.Sprintf("packet-%d", i)
					if !bytes.Equal(in[i].Buf[:in[i].N], []byte(want)) {
						t.Errorf("message %d = %q, want %q", i, in[i].Buf[:in[i].N], want)
					}
					if in[i].Addr.Port() != uint16(a.LocalAddr().(*net.UDPAddr).Port) {
						t.Errorf("message %d from %v, want port %d", i, in[i].Addr, a.LocalAddr().(*net.UDPAddr).Port)
					}
					if in[i].Addr.Addr().Is4In6() {
						t.Errorf("message %d address %v not unmapped", i, in[i].Addr)
					}
				}
				got += n
			}
		})
	}
}

func TestReadAfterClose(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0")
	c := New(a, 4)
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadBatch([]Message{{Buf: make([]byte, 100)}})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("err = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadBatch did not return after Close")
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	a := listen(b, "udp4", "127.0.0.1:0")
	r := listen(b, "udp4", "127.0.0.1:0")
	ca, cr := New(a, 32), New(r, 32)
	to := mustAddrPort(b, r.LocalAddr().String())
	out := make([]Message, 32)
	in := make([]Message, 32)
	for i := range out {
		out[i] = Message{Buf: make([]byte, 160), N: 160, Addr: to}
		in[i].Buf = make([]byte, 1500)
	}
	b.SetBytes(160 * 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.WriteBatch(out); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < 32; {
			n, err := cr.ReadBatch(in)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

// TestWriteBatchOtherFamily: a datagram the socket's family cannot reach
// ends the batch with ErrAddressFamily after the ones before it were sent.
func TestWriteBatchOtherFamily(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0")
	b := listen(t, "udp4", "127.0.0.1:0")
	to := mustAddrPort(t, b.LocalAddr().String())
	out := []Message{
		{Buf: []byte("one"), N: 3, Addr: to},
		{Buf: []byte("two"), N: 3, Addr: mustAddrPort(t, "[2001:db8::1]:9")},
		{Buf: []byte("three"), N: 5, Addr: to},
	}
	n, err := New(a, 4).WriteBatch(out)
	if n != 1 || !errors.Is(err, ErrAddressFamily) {
		t.Fatalf("WriteBatch = %d, %v; want 1, ErrAddressFamily", n, err)
	}
	in := []Message{{Buf: make([]byte, 100)}}
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	if k, err := New(b, 1).ReadBatch(in); k != 1 || err != nil || string(in[0].Buf[:in[0].N]) != "one" {
		t.Fatalf("ReadBatch = %d, %v, %q", k, err, in[0].Buf[:in[0].N])
	}
}

// TestReadBatchEmptyBuffer: a read needs room for a datagram.
func TestReadBatchEmptyBuffer(t *testing.T) {
	c := New(listen(t, "udp4", "127.0.0.1:0"), 2)
	if _, err := c.ReadBatch([]Message{{}}); err == nil {
		t.Fatal("ReadBatch with an empty buffer succeeded")
	}
}
