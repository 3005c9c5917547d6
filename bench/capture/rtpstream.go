package capture

import (
	"net/netip"
	"sort"
	"time"

	"github.com/pion/rtp"
)

// RTPPacket is one RTP (or SRTP) packet of a captured stream. Raw aliases
// the capture's memory and must not be modified.
type RTPPacket struct {
	// Time is the capture timestamp.
	Time time.Time
	// Header is the parsed RTP header.
	Header rtp.Header
	// Raw is the whole packet: header, payload and, for SRTP, the tag.
	Raw []byte
	// HeaderLen is the length of the RTP header inside Raw.
	HeaderLen int
}

// RTPStream is the packets of one SSRC on one UDP flow, in capture order.
type RTPStream struct {
	// SSRC identifies the stream.
	SSRC uint32 `json:"ssrc"`
	// Src and Dst are the flow's addresses.
	Src netip.AddrPort `json:"src"`
	Dst netip.AddrPort `json:"dst"`
	// PayloadTypes lists the payload types seen, in order of appearance.
	PayloadTypes []uint8 `json:"payload_types"`
	// Packets are the stream's packets in capture order.
	Packets []RTPPacket `json:"-"`
}

// Duration is the time between the stream's first and last packet.
func (s *RTPStream) Duration() time.Duration {
	if len(s.Packets) < 2 {
		return 0
	}
	return s.Packets[len(s.Packets)-1].Time.Sub(s.Packets[0].Time)
}

// streamKey identifies a stream: one SSRC on one flow.
type streamKey struct {
	src, dst netip.AddrPort
	ssrc     uint32
}

// ExtractOptions tune ExtractRTPStreams.
type ExtractOptions struct {
	// MinPackets is the number of packets a flow+SSRC needs to count as an
	// RTP stream (default 2): a lone datagram that happens to look like
	// RTP is not a stream.
	MinPackets int
}

// LooksLikeRTP reports whether b can be an RTP (or SRTP) packet: version 2,
// a header that fits, and a payload type outside the range RTCP packet
// types occupy when RTP and RTCP share a port (RFC 5761 section 4).
func LooksLikeRTP(b []byte) bool {
	if len(b) < 12 || b[0]>>6 != 2 {
		return false
	}
	if pt := b[1] & 0x7f; pt >= 64 && pt <= 95 {
		return false
	}
	var h rtp.Header
	n, err := h.Unmarshal(b)
	return err == nil && n <= len(b)
}

// LooksLikeRTCP reports whether b can be an RTCP (or SRTCP) packet.
func LooksLikeRTCP(b []byte) bool {
	return len(b) >= 8 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223
}

// ExtractRTPStreams groups the RTP packets among dgs into streams by flow
// and SSRC, in order of each stream's first packet. Truncated datagrams
// are skipped.
func ExtractRTPStreams(dgs []Datagram, opt ExtractOptions) []*RTPStream {
	if opt.MinPackets <= 0 {
		opt.MinPackets = 2
	}
	byKey := map[streamKey]*RTPStream{}
	var order []*RTPStream
	for _, d := range dgs {
		if d.Truncated || !LooksLikeRTP(d.Payload) {
			continue
		}
		var h rtp.Header
		n, err := h.Unmarshal(d.Payload)
		if err != nil {
			continue
		}
		k := streamKey{d.Src, d.Dst, h.SSRC}
		s := byKey[k]
		if s == nil {
			s = &RTPStream{SSRC: h.SSRC, Src: d.Src, Dst: d.Dst}
			byKey[k] = s
			order = append(order, s)
		}
		if !containsPT(s.PayloadTypes, h.PayloadType) {
			s.PayloadTypes = append(s.PayloadTypes, h.PayloadType)
		}
		// The header keeps slices into the packet (CSRC, extensions);
		// the packet is never modified, so that is safe.
		s.Packets = append(s.Packets, RTPPacket{Time: d.Time, Header: h, Raw: d.Payload, HeaderLen: n})
	}
	out := order[:0]
	for _, s := range order {
		if len(s.Packets) >= opt.MinPackets {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Packets[0].Time.Before(out[j].Packets[0].Time) })
	return out
}

func containsPT(pts []uint8, pt uint8) bool {
	for _, p := range pts {
		if p == pt {
			return true
		}
	}
	return false
}

// ClockRate returns the RTP clock rate of a static payload type, or
// 48000 (Opus, the common dynamic type) otherwise: only jitter uses it.
func ClockRate(pt uint8) uint32 {
	switch pt {
	case 0, 3, 4, 5, 7, 8, 9, 12, 13, 15, 18:
		return 8000
	case 10, 11:
		return 44100
	case 14, 25, 26, 28, 31, 32, 33, 34:
		return 90000
	}
	if pt >= 96 {
		return 48000
	}
	return 8000
}
