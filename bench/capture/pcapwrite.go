package capture

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// PcapWriter writes UDP datagrams to a pcap file (nanosecond timestamps,
// LINKTYPE_RAW) so that Wireshark or `bench verify` can open them. The IP
// and UDP headers are rebuilt from the addresses, with valid checksums. It
// is not safe for concurrent use; the caller closes the underlying writer.
type PcapWriter struct {
	w   *pcapgo.Writer
	buf gopacket.SerializeBuffer
	ip4 layers.IPv4
	ip6 layers.IPv6
	udp layers.UDP
}

// NewPcapWriter writes the file header to w and returns the writer.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return nil, fmt.Errorf("capture: writing pcap header: %w", err)
	}
	return &PcapWriter{w: pw, buf: gopacket.NewSerializeBuffer()}, nil
}

// Write appends one datagram sent from src to dst at t.
func (p *PcapWriter) Write(t time.Time, src, dst netip.AddrPort, payload []byte) error {
	if src.Addr().Is4() != dst.Addr().Is4() {
		return fmt.Errorf("capture: writing pcap: mixed address families %s -> %s", src, dst)
	}
	p.udp = layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	var ipLayer gopacket.SerializableLayer
	if src.Addr().Is4() {
		s, d := src.Addr().As4(), dst.Addr().As4()
		p.ip4 = layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s[:], DstIP: d[:]}
		_ = p.udp.SetNetworkLayerForChecksum(&p.ip4)
		ipLayer = &p.ip4
	} else {
		s, d := src.Addr().As16(), dst.Addr().As16()
		p.ip6 = layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: s[:], DstIP: d[:]}
		_ = p.udp.SetNetworkLayerForChecksum(&p.ip6)
		ipLayer = &p.ip6
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(p.buf, opts, ipLayer, &p.udp, gopacket.Payload(payload)); err != nil {
		return fmt.Errorf("capture: building pcap record: %w", err)
	}
	b := p.buf.Bytes()
	ci := gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(b), Length: len(b)}
	if err := p.w.WritePacket(ci, b); err != nil {
		return fmt.Errorf("capture: writing pcap record: %w", err)
	}
	return nil
}
