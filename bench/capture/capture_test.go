package capture

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The expected values come from tshark reading the same files (see
// testdata/README.md), not from this reader.
func TestReadCaptureRealFiles(t *testing.T) {
	tests := []struct {
		file      string
		format    string
		link      string
		records   int
		rtpPkts   int
		ssrc      uint32
		pt        uint8
		firstSeq  uint16
		lastSeq   uint16
		src, dst  string
		payloadSz int // RTP payload bytes of every packet; 0 = varies
	}{
		{"pcmu-lo.pcap", "pcap", "Ethernet", 48, 47, 0x12345678, 0, 2077, 2123, "127.0.0.1", "127.0.0.1:41000", 160},
		{"opus-lo6.pcapng", "pcapng", "Ethernet", 52, 51, 0x11223344, 111, 650, 700, "::1", "[::1]:41002", 0},
		{"pcmu-any-sll2.pcap", "pcap", "Linux SLL2", 31, 30, 0x01234567, 0, 3869, 3898, "127.0.0.1", "127.0.0.1:41004", 160},
		{"pcmu-any-sll.pcap", "pcap", "Linux SLL", 31, 30, 0x01234568, 0, 3350, 3379, "127.0.0.1", "127.0.0.1:41006", 160},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			dgs, sum, err := ReadCaptureFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if sum.Format != tc.format || len(sum.LinkTypes) != 1 || sum.LinkTypes[0] != tc.link {
				t.Errorf("format %q link types %v, want %q [%s]", sum.Format, sum.LinkTypes, tc.format, tc.link)
			}
			if sum.Records != tc.records || sum.UDP != tc.records || sum.Malformed != 0 {
				t.Errorf("summary %+v, want %d records, all UDP", sum, tc.records)
			}
			streams := ExtractRTPStreams(dgs, ExtractOptions{})
			if len(streams) != 1 {
				t.Fatalf("%d streams, want 1", len(streams))
			}
			s := streams[0]
			if s.SSRC != tc.ssrc || len(s.PayloadTypes) != 1 || s.PayloadTypes[0] != tc.pt {
				t.Errorf("ssrc %#x pts %v, want %#x [%d]", s.SSRC, s.PayloadTypes, tc.ssrc, tc.pt)
			}
			if len(s.Packets) != tc.rtpPkts {
				t.Errorf("%d packets, want %d", len(s.Packets), tc.rtpPkts)
			}
			if f, l := s.Packets[0].Header.SequenceNumber, s.Packets[len(s.Packets)-1].Header.SequenceNumber; f != tc.firstSeq || l != tc.lastSeq {
				t.Errorf("seq %d..%d, want %d..%d", f, l, tc.firstSeq, tc.lastSeq)
			}
			if s.Src.Addr() != netip.MustParseAddr(tc.src) || s.Dst != netip.MustParseAddrPort(tc.dst) {
				t.Errorf("flow %s -> %s, want %s -> %s", s.Src, s.Dst, tc.src, tc.dst)
			}
			for i, p := range s.Packets {
				if tc.payloadSz != 0 && len(p.Raw)-p.HeaderLen != tc.payloadSz {
					t.Fatalf("packet %d: payload %d bytes, want %d", i, len(p.Raw)-p.HeaderLen, tc.payloadSz)
				}
				if i > 0 && p.Time.Before(s.Packets[i-1].Time) {
					t.Fatalf("packet %d goes back in time", i)
				}
			}
			// ffmpeg -re paces at 20 ms per packet: the stream lasts about
			// (n-1)*20 ms.
			want := time.Duration(tc.rtpPkts-1) * 20 * time.Millisecond
			if d := s.Duration(); d < want/2 || d > want*2 {
				t.Errorf("duration %v, want about %v", d, want)
			}
		})
	}
}

func TestReadCaptureRejects(t *testing.T) {
	pcap, err := os.ReadFile("testdata/pcmu-lo.pcap")
	if err != nil {
		t.Fatal(err)
	}
	ng, err := os.ReadFile("testdata/opus-lo6.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	badLen := bytes.Clone(ng)
	// the section header block's length field
	badLen[4], badLen[5], badLen[6], badLen[7] = 0xff, 0xff, 0xff, 0x7f
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotCapture},
		{"text", []byte("this is not a capture file, just some text\n"), ErrNotCapture},
		{"json", []byte(`{"streams":[]}`), ErrNotCapture},
		{"pcap header cut", pcap[:16], ErrCorruptCapture},
		{"pcap record cut", pcap[:len(pcap)-37], ErrCorruptCapture},
		{"pcap record header cut", pcap[:24+8], ErrCorruptCapture},
		{"pcapng cut", ng[:len(ng)-9], ErrCorruptCapture},
		{"pcapng bad block length", badLen, ErrCorruptCapture},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadCapture(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ce *CaptureError
			if !errors.As(err, &ce) {
				t.Fatalf("err %T is not a *CaptureError", err)
			}
			t.Logf("%v", err)
		})
	}
}

func TestPcapWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 123456789)
	in := []struct {
		src, dst string
		payload  []byte
	}{
		{"192.0.2.1:5004", "198.51.100.7:40000", []byte{0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xaa}},
		{"[2001:db8::1]:5004", "[2001:db8::2]:6000", []byte("hello")},
	}
	for i, p := range in {
		if err := w.Write(t0.Add(time.Duration(i)*time.Millisecond), netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst), p.payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(t0, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("[2001:db8::2]:1"), nil); err == nil {
		t.Error("mixed families accepted")
	}
	dgs, sum, err := ReadCapture(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(dgs) != len(in) || sum.LinkTypes[0] != "Raw IP" {
		t.Fatalf("read back %d datagrams (%+v), want %d", len(dgs), sum, len(in))
	}
	for i, p := range in {
		d := dgs[i]
		if d.Src.String() != p.src || d.Dst.String() != p.dst || !bytes.Equal(d.Payload, p.payload) {
			t.Errorf("datagram %d = %s -> %s %x", i, d.Src, d.Dst, d.Payload)
		}
		if !d.Time.Equal(t0.Add(time.Duration(i) * time.Millisecond)) {
			t.Errorf("datagram %d time %v", i, d.Time)
		}
	}
}

func TestLooksLikeRTP(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"pcmu", []byte{0x80, 0x00, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 0xff}, true},
		{"rtcp sr", []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0}, false},
		{"stun", []byte{0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0}, false},
		{"short", []byte{0x80, 0, 0, 1}, false},
		{"csrc past end", []byte{0x8f, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4}, false},
	}
	for _, tc := range tests {
		if got := LooksLikeRTP(tc.in); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzReadCapture(f *testing.F) {
	for _, name := range []string{"pcmu-lo.pcap", "opus-lo6.pcapng", "pcmu-any-sll2.pcap", "pcmu-any-sll.pcap"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 600)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dgs, _, err := ReadCapture(bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrNotCapture) && !errors.Is(err, ErrCorruptCapture) {
			t.Fatalf("unclassified error %v", err)
		}
		for _, s := range ExtractRTPStreams(dgs, ExtractOptions{MinPackets: 1}) {
			for _, p := range s.Packets {
				if p.HeaderLen > len(p.Raw) {
					t.Fatalf("header %d > packet %d", p.HeaderLen, len(p.Raw))
				}
			}
		}
	})
}

func FuzzExtractRTPStreams(f *testing.F) {
	f.Add([]byte{0x80, 0x00, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 0xff}, 3)
	f.Add([]byte{0x90, 0x60, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0}, 2)
	f.Add([]byte{0xa0, 0x00, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 3}, 1)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		// The input is split into datagrams of one flow at every multiple of
		// cut, so several packets and streams come out of one input.
		if cut <= 0 || cut > len(b) {
			cut = len(b)
		}
		var dgs []Datagram
		src, dst := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")
		for i := 0; i < len(b); i += cut {
			dgs = append(dgs, Datagram{Src: src, Dst: dst, Payload: b[i:min(len(b), i+cut)]})
		}
		total := 0
		for _, s := range ExtractRTPStreams(dgs, ExtractOptions{MinPackets: 1}) {
			for _, p := range s.Packets {
				if p.Header.SSRC != s.SSRC || p.HeaderLen > len(p.Raw) {
					t.Fatalf("bad packet in stream %#x", s.SSRC)
				}
				total++
			}
		}
		if total > len(dgs) {
			t.Fatalf("%d packets from %d datagrams", total, len(dgs))
		}
	})
}
