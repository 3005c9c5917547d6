package udpbatch

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// cmsg builds one control message as the kernel writes it (padded).
func cmsg(level, typ int32, data []byte) []byte {
	l := unix.SizeofCmsghdr + len(data)
	b := make([]byte, unix.CmsgSpace(len(data)))
	binary.NativeEndian.PutUint64(b, uint64(l))
	binary.NativeEndian.PutUint32(b[8:], uint32(level))
	binary.NativeEndian.PutUint32(b[12:], uint32(typ))
	copy(b[unix.SizeofCmsghdr:], data)
	return b
}

func sockaddr4(ap netip.AddrPort) []byte {
	b := make([]byte, unix.SizeofSockaddrInet4)
	binary.NativeEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As4()
	copy(b[4:], a[:])
	return b
}

func sockaddr6(ap netip.AddrPort) []byte {
	b := make([]byte, unix.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	return b
}

func TestParseOrigDst(t *testing.T) {
	v4 := netip.MustParseAddrPort("192.0.2.1:5004")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:40000")
	mapped := netip.MustParseAddrPort("[::ffff:198.51.100.7]:30000")
	other := cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, make([]byte, 16))
	for _, tc := range []struct {
		name string
		in   []byte
		want netip.AddrPort
	}{
		{"ipv4", cmsg(unix.SOL_IP, unix.IP_ORIGDSTADDR, sockaddr4(v4)), v4},
		{"ipv6", cmsg(unix.SOL_IPV6, unix.IPV6_ORIGDSTADDR, sockaddr6(v6)), v6},
		{"mapped", cmsg(unix.SOL_IPV6, unix.IPV6_ORIGDSTADDR, sockaddr6(mapped)), netip.MustParseAddrPort("198.51.100.7:30000")},
		{"after another", append(other, cmsg(unix.SOL_IP, unix.IP_ORIGDSTADDR, sockaddr4(v4))...), v4},
		{"empty", nil, netip.AddrPort{}},
		{"only another", other, netip.AddrPort{}},
		{"short header", cmsg(unix.SOL_IP, unix.IP_ORIGDSTADDR, sockaddr4(v4))[:10], netip.AddrPort{}},
		{"cut data", cmsg(unix.SOL_IP, unix.IP_ORIGDSTADDR, sockaddr4(v4))[:20], netip.AddrPort{}},
		{"wrong family", cmsg(unix.SOL_IP, unix.IP_ORIGDSTADDR, sockaddr6(v6)[:16]), netip.AddrPort{}},
		{"short ipv6", cmsg(unix.SOL_IPV6, unix.IPV6_ORIGDSTADDR, sockaddr6(v6)[:20]), netip.AddrPort{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseOrigDst(tc.in); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// FuzzOrigDst feeds arbitrary control bytes to the parser: it never
// panics, and an address it returns is valid.
func FuzzOrigDst(f *testing.F) {
	f.Add(cmsg(unix.SOL_IP, unix.IP_ORIGDSTADDR, sockaddr4(netip.MustParseAddrPort("192.0.2.1:5004"))))
	f.Add(cmsg(unix.SOL_IPV6, unix.IPV6_ORIGDSTADDR, sockaddr6(netip.MustParseAddrPort("[2001:db8::1]:5004"))))
	f.Add(append(cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, make([]byte, 16)),
		cmsg(unix.SOL_IP, unix.IP_ORIGDSTADDR, sockaddr4(netip.MustParseAddrPort("198.51.100.2:1")))...))
	f.Add([]byte{})
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := parseOrigDst(b); got.IsValid() && !got.Addr().IsValid() {
			t.Fatalf("invalid address %v", got)
		}
	})
}

// TestRecvOrigDst reads datagrams sent to two loopback addresses of one
// wildcard socket and checks each one's original destination, for both
// families, and that a batch without control buffers reports none.
func TestRecvOrigDst(t *testing.T) {
	for _, tc := range []struct {
		name, bind string
		dual       bool
		dsts       []string
	}{
		{"ipv4", "0.0.0.0:0", false, []string{"127.0.0.1", "127.0.0.2"}},
		{"dual", "[::]:0", true, []string{"127.0.0.1", "::1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, la := rawSock(t, tc.bind, sockopt.Options{}, tc.dual)
			if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); err != nil {
				t.Fatal(err)
			}
			if tc.dual {
				if err := unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_RECVORIGDSTADDR, 1); err != nil {
					t.Fatal(err)
				}
			}
			var want []netip.AddrPort
			for _, d := range tc.dsts {
				dst := netip.AddrPortFrom(netip.MustParseAddr(d), la.Port())
				bind := "127.0.0.1:0"
				if dst.Addr().Is6() {
					bind = "[::1]:0"
				}
				s, _ := rawSock(t, bind, sockopt.Options{}, false)
				var sa unix.Sockaddr
				if dst.Addr().Is6() {
					sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
				} else {
					sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
				}
				if err := unix.Sendto(s, []byte("x"), 0, sa); err != nil {
					t.Fatal(err)
				}
				want = append(want, dst)
			}
			b := NewRecvBatchOrigDst(8)
			bufs := [][]byte{make([]byte, 64), make([]byte, 64), make([]byte, 64)}
			var got []netip.AddrPort
			for try := 0; try < 200 && len(got) < len(want); try++ {
				n, _ := b.Recv(fd, bufs)
				for i := 0; i < n; i++ {
					got = append(got, b.OrigDst(i))
				}
				if n == 0 {
					waitReadable(t, fd)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("datagram %d: original destination %s, want %s", i, got[i], want[i])
				}
			}
			if got := NewRecvBatch(1).OrigDst(0); got.IsValid() {
				t.Errorf("a batch without control buffers reports %s", got)
			}
		})
	}
}

func waitReadable(t *testing.T, fd int) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, 100); err != nil && err != unix.EINTR {
		t.Fatal(err)
	}
}

// BenchmarkRecvOrigDst reads batches of 32 datagrams with their original
// destinations on loopback.
func BenchmarkRecvOrigDst(b *testing.B) {
	fd, la := rawSock(b, "127.0.0.1:0", sockopt.Options{RecvBuffer: 4 << 20}, false)
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); err != nil {
		b.Fatal(err)
	}
	s, _ := rawSock(b, "127.0.0.1:0", sockopt.Options{}, false)
	sb := NewSendBatch(32)
	rb := NewRecvBatchOrigDst(32)
	bufs := make([][]byte, 32)
	for i := range bufs {
		bufs[i] = make([]byte, 256)
	}
	p := make([]byte, 160)
	var sink netip.AddrPort
	b.ReportAllocs()
	for b.Loop() {
		sb.Reset(false, false)
		for range 32 {
			_ = sb.Add(p, la)
		}
		if err := sb.SendAll(s, func(int, int) {}); err != nil {
			b.Fatal(err)
		}
		n, err := rb.Recv(fd, bufs)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i++ {
			sink = rb.OrigDst(i)
		}
	}
	if sink != la {
		b.Fatalf("original destination %s, want %s", sink, la)
	}
}
