package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// linkType is a LINKTYPE_ value as the file states it. gopacket 1.1.19's
// layers.LinkType is a uint8 and pcapgo truncates larger values, so the
// capture reader takes the real value from the file headers.
type linkType uint32

// Link types the reader decodes.
const (
	linkNull      linkType = 0
	linkEthernet  linkType = 1
	linkRawBSD1   linkType = 12 // DLT_RAW on some BSDs
	linkRawBSD2   linkType = 14
	linkRaw       linkType = 101
	linkLoop      linkType = 108
	linkLinuxSLL  linkType = 113
	linkIPv4      linkType = 228
	linkIPv6      linkType = 229
	linkLinuxSLL2 linkType = 276 // what tcpdump 4.99 writes for `-i any`; gopacket has no decoder
)

func (lt linkType) String() string {
	switch lt {
	case linkNull:
		return "Null"
	case linkEthernet:
		return "Ethernet"
	case linkRaw, linkRawBSD1, linkRawBSD2:
		return "Raw IP"
	case linkLoop:
		return "Loop"
	case linkLinuxSLL:
		return "Linux SLL"
	case linkIPv4:
		return "IPv4"
	case linkIPv6:
		return "IPv6"
	case linkLinuxSLL2:
		return "Linux SLL2"
	}
	return fmt.Sprintf("linktype %d", uint32(lt))
}

type decodeResult int

const (
	decodedUDP decodeResult = iota
	decodedOther
	decodedMalformed
)

// linkDecoder turns one captured frame into a UDP datagram. It reuses its
// layer structs: one decoder per goroutine.
type linkDecoder struct {
	eth   layers.Ethernet
	dot1q layers.Dot1Q
	sll   layers.LinuxSLL
	ip4   layers.IPv4
	ip6   layers.IPv6
	udp   layers.UDP
	// parsers by first layer type (the parser's first layer is fixed at
	// construction); they share the layer structs above.
	parsers map[gopacket.LayerType]*gopacket.DecodingLayerParser
	layers  []gopacket.LayerType
}

func newLinkDecoder() *linkDecoder {
	d := &linkDecoder{parsers: map[gopacket.LayerType]*gopacket.DecodingLayerParser{}}
	for _, first := range []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeLinuxSLL,
		layers.LayerTypeIPv4, layers.LayerTypeIPv6} {
		p := gopacket.NewDecodingLayerParser(first, &d.eth, &d.dot1q, &d.sll, &d.ip4, &d.ip6, &d.udp)
		// Anything after UDP (the RTP payload) or an unknown protocol
		// simply ends decoding; what was decoded tells us the rest.
		p.IgnoreUnsupported = true
		d.parsers[first] = p
	}
	d.layers = make([]gopacket.LayerType, 0, 8)
	return d
}

// decode finds the UDP datagram in a frame of link type lt.
func (d *linkDecoder) decode(lt linkType, frame []byte) (Datagram, decodeResult) {
	first := layers.LayerTypeEthernet
	switch lt {
	case linkEthernet:
	case linkLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case linkLinuxSLL2:
		// protocol type (2), reserved (2), interface index (4), ARPHRD
		// type (2), packet type (1), address length (1), address (8).
		if len(frame) < 20 {
			return Datagram{}, decodedMalformed
		}
		var ok bool
		if first, ok = ipLayerForEtherType(binary.BigEndian.Uint16(frame)); !ok {
			return Datagram{}, decodedOther
		}
		frame = frame[20:]
	case linkNull, linkLoop:
		// A 4-byte address family, in the writer's byte order for NULL and
		// network order for LOOP: AF_INET is 2 everywhere, AF_INET6 is 10
		// on Linux and 24, 28 or 30 on the BSDs.
		if len(frame) < 4 {
			return Datagram{}, decodedMalformed
		}
		fam := binary.LittleEndian.Uint32(frame)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(frame)
		}
		switch fam {
		case 2:
			first = layers.LayerTypeIPv4
		case 10, 24, 28, 30:
			first = layers.LayerTypeIPv6
		default:
			return Datagram{}, decodedOther
		}
		frame = frame[4:]
	case linkRaw, linkRawBSD1, linkRawBSD2, linkIPv4, linkIPv6:
		if len(frame) < 1 {
			return Datagram{}, decodedMalformed
		}
		switch frame[0] >> 4 {
		case 4:
			first = layers.LayerTypeIPv4
		case 6:
			first = layers.LayerTypeIPv6
		default:
			return Datagram{}, decodedMalformed
		}
	default:
		return Datagram{}, decodedOther
	}
	parser := d.parsers[first]
	if err := parser.DecodeLayers(frame, &d.layers); err != nil {
		return Datagram{}, decodedMalformed
	}
	var (
		src, dst netip.Addr
		isUDP    bool
	)
	for _, l := range d.layers {
		switch l {
		case layers.LayerTypeIPv4:
			// Later fragments carry no UDP header; a first fragment's
			// UDP length would not match what follows.
			if d.ip4.FragOffset != 0 || d.ip4.Flags&layers.IPv4MoreFragments != 0 {
				return Datagram{}, decodedOther
			}
			src, _ = netip.AddrFromSlice(d.ip4.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(d.ip4.DstIP.To4())
		case layers.LayerTypeIPv6:
			src, _ = netip.AddrFromSlice(d.ip6.SrcIP.To16())
			dst, _ = netip.AddrFromSlice(d.ip6.DstIP.To16())
		case layers.LayerTypeUDP:
			isUDP = true
		}
	}
	if !isUDP || !src.IsValid() || !dst.IsValid() {
		return Datagram{}, decodedOther
	}
	return Datagram{
		Src:       netip.AddrPortFrom(src, uint16(d.udp.SrcPort)),
		Dst:       netip.AddrPortFrom(dst, uint16(d.udp.DstPort)),
		Payload:   d.udp.Payload,
		Truncated: parser.Truncated,
	}, decodedUDP
}

func ipLayerForEtherType(et uint16) (gopacket.LayerType, bool) {
	switch layers.EthernetType(et) {
	case layers.EthernetTypeIPv4:
		return layers.LayerTypeIPv4, true
	case layers.EthernetTypeIPv6:
		return layers.LayerTypeIPv6, true
	}
	return 0, false
}
