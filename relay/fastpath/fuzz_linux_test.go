package fastpath

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// fuzzEntry is the channel the fuzz target's program knows.
var fuzzEntry = Entry{
	Client:   netip.MustParseAddrPort("192.0.2.1:40000"),
	Listener: netip.MustParseAddrPort("198.51.100.1:3478"),
	Relay:    netip.MustParseAddrPort("198.51.100.1:50000"),
	Peer:     netip.MustParseAddrPort("192.0.2.9:6000"),
	Channel:  0x4001,
	Mark:     7,
}

// udp4 builds an Ethernet + IPv4 + UDP frame.
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 14+20+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
	u := ip[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	return b
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// FuzzProgram runs arbitrary frames through the loaded program with
// BPF_PROG_TEST_RUN (nothing is attached) and checks that whatever it
// returns is a verdict it may give and, when it changed the frame, a
// well-formed IPv4/UDP datagram with consistent lengths and a valid IP
// header checksum.
func FuzzProgram(f *testing.F) {
	e := fuzzEntry
	f.Add(udp4(e.Client, e.Listener, channelData(e.Channel, []byte("hello"))))
	f.Add(udp4(e.Client, e.Listener, channelData(e.Channel, make([]byte, 1000))))
	f.Add(udp4(e.Client, e.Listener, []byte{0x40, 0x01, 0xff, 0xff, 1, 2, 3, 4}))
	f.Add(udp4(e.Client, e.Listener, []byte{0x40, 0x01}))
	f.Add(udp4(e.Peer, e.Relay, []byte("from the peer")))
	f.Add(udp4(e.Peer, e.Relay, nil))
	f.Add(udp4(e.Client, e.Listener, []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}))
	f.Add([]byte("short"))
	if os.Geteuid() != 0 {
		f.Skip("fastpath: running the BPF program needs root (CAP_BPF)")
	}
	fw, err := New()
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	f.Cleanup(func() { fw.Close() })
	if err := fw.Add(e); err != nil {
		f.Fatalf("Add: %v", err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 1600 {
			return // the kernel refuses test runs shorter than an Ethernet header
		}
		// The kernel's test run also refuses (EINVAL) an IPv4 or IPv6 frame
		// too short for its IP header; real packets never are.
		switch binary.BigEndian.Uint16(in[12:]) {
		case 0x0800:
			if len(in) < 14+20 {
				return
			}
		case 0x86dd:
			if len(in) < 14+40 {
				return
			}
		}
		opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
		ret, err := fw.objs.TurnfwdIngress.Run(&opts)
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		out := opts.DataOut
		// TC_ACT_OK 0, TC_ACT_SHOT 2, TC_ACT_REDIRECT 7.
		if ret != 0 && ret != 2 && ret != 7 {
			t.Fatalf("verdict %d", ret)
		}
		if ret == 2 || string(out) == string(in) {
			return
		}
		if len(out) < 14+20+8 {
			t.Fatalf("changed frame of %d bytes", len(out))
		}
		ip := out[14:]
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		ulen := int(binary.BigEndian.Uint16(ip[24:]))
		if tot != len(ip) || ulen != tot-20 {
			t.Fatalf("changed frame: %d bytes after Ethernet, IP total %d, UDP length %d", len(ip), tot, ulen)
		}
		// An incremental update keeps a bad input checksum bad (the stack
		// or the next hop drops it); a good one must stay good.
		if ipChecksum(in[14:34]) == 0 && ipChecksum(ip[:20]) != 0 {
			t.Fatalf("changed frame: bad IP header checksum")
		}
	})
}

// TestProgramRewrites checks both rewrites byte for byte with
// BPF_PROG_TEST_RUN: ChannelData from the client becomes the peer datagram,
// the peer's datagram becomes ChannelData to the client.
func TestProgramRewrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: running the BPF program needs root (CAP_BPF)")
	}
	fw, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer fw.Close()
	e := fuzzEntry
	if err := fw.Add(e); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in, out []byte
	}{
		{"client to peer", udp4(e.Client, e.Listener, channelData(e.Channel, []byte("hello"))), udp4(e.Relay, e.Peer, []byte("hello"))},
		{"peer to client", udp4(e.Peer, e.Relay, []byte("hello")), udp4(e.Listener, e.Client, channelData(e.Channel, []byte("hello"))[:9])},
		{"unknown channel passes", udp4(e.Client, e.Listener, channelData(0x4002, []byte("hello"))), nil},
		{"unknown peer passes", udp4(e.Client, e.Relay, []byte("hello")), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := ebpf.RunOptions{Data: tc.in, DataOut: make([]byte, len(tc.in)+64)}
			if _, err := fw.objs.TurnfwdIngress.Run(&opts); err != nil {
				t.Fatal(err)
			}
			want := tc.out
			if want == nil {
				want = tc.in
			}
			got := opts.DataOut
			// Our builder leaves the UDP checksum 0; the program keeps a
			// zero checksum zero (BPF_F_MARK_MANGLED_0) and sends 0 toward
			// peers, so the frames compare whole.
			if string(got) != string(want) {
				t.Fatalf("got  %x\nwant %x", got, want)
			}
		})
	}
	// With a real UDP checksum from the peer, the incremental update
	// toward the client must leave a checksum that verifies.
	in := withUDPChecksum(udp4(e.Peer, e.Relay, []byte("checksummed!")))
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+64)}
	if _, err := fw.objs.TurnfwdIngress.Run(&opts); err != nil {
		t.Fatal(err)
	}
	got := opts.DataOut
	if len(got) != len(in)+4 || binary.BigEndian.Uint16(got[14+20+6:]) == 0 {
		t.Fatalf("checksummed peer datagram: got %x", got)
	}
	if sum := udpSum(got); sum != 0xffff {
		t.Fatalf("UDP checksum toward the client does not verify (sum %#x): %x", sum, got)
	}

	c, err := fw.Counters(e)
	if err != nil || c != (Counters{1, 5, 2, 17}) {
		t.Fatalf("counters %+v, %v; want one 5-byte datagram each way", c, err)
	}
}

// udpSum is the one's complement sum over the pseudo header and the UDP
// datagram of frame; 0xffff means the checksum verifies.
func udpSum(frame []byte) uint16 {
	ip := frame[14:]
	u := ip[20:]
	ulen := int(binary.BigEndian.Uint16(u[4:]))
	var sum uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			if i+1 < len(b) {
				sum += uint32(binary.BigEndian.Uint16(b[i:]))
			} else {
				sum += uint32(b[i]) << 8
			}
		}
	}
	add(ip[12:20])
	sum += 17 + uint32(ulen)
	add(u[:ulen])
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// withUDPChecksum fills in frame's UDP checksum.
func withUDPChecksum(frame []byte) []byte {
	c := ^udpSum(frame)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[14+20+6:], c)
	return frame
}
