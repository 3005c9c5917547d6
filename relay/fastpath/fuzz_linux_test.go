package fastpath

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// fuzzEntry and fuzzEntry6 are the channels the test programs know.
var (
	fuzzEntry = Entry{
		Client:   netip.MustParseAddrPort("192.0.2.1:40000"),
		Listener: netip.MustParseAddrPort("198.51.100.1:3478"),
		Relay:    netip.MustParseAddrPort("198.51.100.1:50000"),
		Peer:     netip.MustParseAddrPort("192.0.2.9:6000"),
		Channel:  0x4001,
		Mark:     7,
	}
	fuzzEntry6 = Entry{
		Client:   netip.MustParseAddrPort("[2001:db8:1::1]:40000"),
		Listener: netip.MustParseAddrPort("[2001:db8:2::1]:3478"),
		Relay:    netip.MustParseAddrPort("[2001:db8:2::1]:50000"),
		Peer:     netip.MustParseAddrPort("[2001:db8:3::9]:6000"),
		Channel:  0x7ffe,
		Mark:     7,
	}
)

// loadForTestRun loads the program with fuzzEntry and fuzzEntry6 for
// BPF_PROG_TEST_RUN; nothing is attached, so egress resolution is not
// asked (the test addresses have no routes here).
func loadForTestRun(tb testing.TB) *Forwarder {
	tb.Helper()
	fw, err := New()
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { fw.Close() })
	fw.egress = func(netip.Addr, netip.Addr, uint32) (uint32, error) { return loopbackIfindex, nil }
	for _, e := range []Entry{fuzzEntry, fuzzEntry6} {
		if err := fw.Add(e); err != nil {
			tb.Fatalf("Add: %v", err)
		}
	}
	return fw
}

// udpFrame builds an Ethernet + IPv4 or IPv6 + UDP frame; with csum its
// UDP checksum is filled in, otherwise left 0 (IPv4: none).
func udpFrame(src, dst netip.AddrPort, payload []byte, csum bool) []byte {
	ipLen, etype := 20, uint16(0x0800)
	if src.Addr().Is6() {
		ipLen, etype = 40, 0x86dd
	}
	b := make([]byte, 14+ipLen+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], etype)
	ip := b[14:]
	if ipLen == 20 {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
		ip[8] = 64
		ip[9] = 17
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
	} else {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(8+len(payload)))
		ip[6] = 17
		ip[7] = 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	u := ip[ipLen:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	if csum {
		withUDPChecksum(b)
	}
	return b
}

// udp4 is udpFrame for IPv4 without a UDP checksum.
func udp4(src, dst netip.AddrPort, payload []byte) []byte { return udpFrame(src, dst, payload, false) }

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

// frameIP returns the IP header length of an Ethernet frame (20 or 40),
// or 0 if it is neither IPv4 nor IPv6.
func frameIP(frame []byte) int {
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		return 20
	case 0x86dd:
		return 40
	}
	return 0
}

// udpSum is the one's complement sum over the pseudo header and the UDP
// datagram of frame (IPv4 or IPv6, no options); 0xffff means the checksum
// verifies.
func udpSum(frame []byte) uint16 {
	ipLen := frameIP(frame)
	ip := frame[14:]
	u := ip[ipLen:]
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
	if ipLen == 20 {
		add(ip[12:20])
	} else {
		add(ip[8:40])
	}
	sum += 17 + uint32(ulen)
	add(u[:ulen])
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// udpCheck is frame's UDP checksum field.
func udpCheck(frame []byte) uint16 {
	return binary.BigEndian.Uint16(frame[14+frameIP(frame)+6:])
}

// withUDPChecksum fills in frame's UDP checksum.
func withUDPChecksum(frame []byte) []byte {
	off := 14 + frameIP(frame) + 6
	binary.BigEndian.PutUint16(frame[off:], 0)
	c := ^udpSum(frame)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[off:], c)
	return frame
}

// FuzzProgram runs arbitrary frames through the loaded program with
// BPF_PROG_TEST_RUN (nothing is attached) and checks that whatever it
// returns is a verdict it may give and, when it changed the frame, a
// well-formed IPv4 or IPv6 UDP datagram with consistent lengths, a valid
// IPv4 header checksum if the input had one, and a UDP checksum that
// verifies if the input's did (the test run's skb is CHECKSUM_NONE, so
// the program must produce the complete checksum).
func FuzzProgram(f *testing.F) {
	for _, e := range []Entry{fuzzEntry, fuzzEntry6} {
		for _, csum := range []bool{false, true} {
			f.Add(udpFrame(e.Client, e.Listener, channelData(e.Channel, []byte("hello")), csum))
			f.Add(udpFrame(e.Client, e.Listener, channelDataPad(e.Channel, []byte("odd"), 0xee), csum))
			f.Add(udpFrame(e.Client, e.Listener, channelData(e.Channel, make([]byte, 1000)), csum))
			f.Add(udpFrame(e.Client, e.Listener, channelData(e.Channel, make([]byte, 3000)), csum))
			f.Add(udpFrame(e.Client, e.Listener, []byte{0x40, 0x01, 0xff, 0xff, 1, 2, 3, 4}, csum))
			f.Add(udpFrame(e.Client, e.Listener, []byte{0x40, 0x01}, csum))
			f.Add(udpFrame(e.Peer, e.Relay, []byte("from the peer"), csum))
			f.Add(udpFrame(e.Peer, e.Relay, make([]byte, 2500), csum))
			f.Add(udpFrame(e.Peer, e.Relay, nil, csum))
			f.Add(udpFrame(e.Client, e.Listener, []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, csum))
		}
	}
	// A capped channel too, so that the bucket code runs on fuzzed input.
	capped := fuzzEntry
	capped.Relay = netip.AddrPortFrom(capped.Relay.Addr(), capped.Relay.Port()+1)
	capped.Peer = netip.AddrPortFrom(capped.Peer.Addr(), capped.Peer.Port()+1)
	capped.Channel++
	capped.Bitrate = 64000
	f.Add(udpFrame(capped.Client, capped.Listener, channelData(capped.Channel, make([]byte, 900)), true))
	f.Add(udpFrame(capped.Peer, capped.Relay, make([]byte, 900), true))
	f.Add([]byte("short"))
	if os.Geteuid() != 0 {
		f.Skip("fastpath: running the BPF program needs root (CAP_BPF)")
	}
	fw := loadForTestRun(f)
	if err := fw.Add(capped); err != nil {
		f.Fatalf("Add: %v", err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 3500 {
			return // the kernel refuses test runs shorter than an Ethernet header or longer than about a page
		}
		// The kernel's test run also refuses (EINVAL) an IPv4 or IPv6 frame
		// too short for its IP header; real packets never are.
		ipLen := frameIP(in)
		if ipLen != 0 && len(in) < 14+ipLen {
			return
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
		if ipLen == 0 || len(out) < 14+ipLen+8 || frameIP(out) != ipLen {
			t.Fatalf("changed frame of %d bytes: %x", len(out), out)
		}
		ip := out[14:]
		var plen int // what the IP header says follows it
		if ipLen == 20 {
			plen = int(binary.BigEndian.Uint16(ip[2:])) - 20
			// An incremental update keeps a bad input checksum bad (the
			// stack or the next hop drops it); a good one must stay good.
			if ipChecksum(in[14:34]) == 0 && ipChecksum(ip[:20]) != 0 {
				t.Fatalf("changed frame: bad IP header checksum")
			}
		} else {
			plen = int(binary.BigEndian.Uint16(ip[4:]))
		}
		ulen := int(binary.BigEndian.Uint16(ip[ipLen+4:]))
		if plen != len(ip)-ipLen || ulen != plen {
			t.Fatalf("changed frame: %d bytes after the IP header, IP says %d, UDP length %d", len(ip)-ipLen, plen, ulen)
		}
		inCsum := udpCheck(in) != 0 && udpSum(in) == 0xffff
		if inCsum && (udpCheck(out) == 0 || udpSum(out) != 0xffff) {
			t.Fatalf("changed frame: the input's UDP checksum verified, the output's (%#04x) does not: %x", udpCheck(out), out)
		}
		if ipLen == 40 && udpCheck(out) == 0 {
			t.Fatalf("changed frame: IPv6 datagram without a UDP checksum")
		}
	})
}

// TestProgramRewrites checks both rewrites byte for byte with
// BPF_PROG_TEST_RUN, IPv4 and IPv6, with and without UDP checksums and
// padding: ChannelData from the client becomes the peer datagram, the
// peer's datagram becomes ChannelData to the client, and the checksums
// the program updated incrementally equal ones computed from scratch.
func TestProgramRewrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: running the BPF program needs root (CAP_BPF)")
	}
	fw := loadForTestRun(t)
	type tc struct {
		name    string
		in, out []byte
	}
	var cases []tc
	var sent [2]Counters // what each entry should have counted
	for fam, e := range []Entry{fuzzEntry, fuzzEntry6} {
		for _, csum := range []bool{false, true} {
			if fam == 1 && !csum {
				continue // IPv6 always has a checksum
			}
			for _, n := range []int{1, 5, 8, 1201} {
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(i*7 + n)
				}
				name := e.Client.Addr().String() + map[bool]string{true: " checksummed", false: ""}[csum] + " " + string(rune('0'+n%10))
				cases = append(cases,
					tc{"client to peer " + name, udpFrame(e.Client, e.Listener, channelDataPad(e.Channel, p, 0xee), csum), udpFrame(e.Relay, e.Peer, p, csum)},
					tc{"peer to client " + name, udpFrame(e.Peer, e.Relay, p, csum), udpFrame(e.Listener, e.Client, channelData(e.Channel, p)[:4+n], csum)},
				)
				sent[fam].ToPeerPackets++
				sent[fam].ToPeerBytes += uint64(n)
				sent[fam].ToClientPackets++
				sent[fam].ToClientBytes += uint64(n)
			}
		}
		cases = append(cases,
			tc{"unknown channel passes " + e.Client.Addr().String(), udpFrame(e.Client, e.Listener, channelData(0x4002, []byte("hello")), true), nil},
			tc{"unknown peer passes " + e.Client.Addr().String(), udpFrame(e.Client, e.Relay, []byte("hello"), true), nil},
			tc{"bad padding passes " + e.Client.Addr().String(), udpFrame(e.Client, e.Listener, append(channelData(e.Channel, []byte("hello")), 0, 0, 0, 0), true), nil},
		)
	}
	// IPv6 without a UDP checksum is invalid (RFC 8200): left to the stack.
	e := fuzzEntry6
	cases = append(cases,
		tc{"ipv6 zero checksum from the client passes", udpFrame(e.Client, e.Listener, channelData(e.Channel, []byte("hello")), false), nil},
		tc{"ipv6 zero checksum from the peer passes", udpFrame(e.Peer, e.Relay, []byte("hello"), false), nil},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := ebpf.RunOptions{Data: tc.in, DataOut: make([]byte, len(tc.in)+64)}
			if _, err := fw.objs.TurnfwdIngress.Run(&opts); err != nil {
				t.Fatal(err)
			}
			want := tc.out
			if want == nil {
				want = tc.in
			}
			if got := opts.DataOut; string(got) != string(want) {
				t.Fatalf("got  %x\nwant %x", got, want)
			}
		})
	}
	for fam, e := range []Entry{fuzzEntry, fuzzEntry6} {
		c, err := fw.Counters(e)
		if err != nil || c != sent[fam] {
			t.Errorf("%v counters %+v, %v; want %+v", e.Client.Addr(), c, err, sent[fam])
		}
	}
}
