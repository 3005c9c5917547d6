package relay

import "encoding/binary"

// clientKind is what a datagram from a client on a UDP listener is, by
// its first two bits (RFC 8656 §12) and a check of its header.
type clientKind uint8

const (
	// clientMalformed: neither a plausible STUN message nor a complete
	// ChannelData message; dropped and counted as malformed.
	clientMalformed clientKind = iota
	// clientSTUN: a STUN message header (RFC 8489 §5) whose length
	// matches the datagram; it goes to pion.
	clientSTUN
	// clientChannelData: a ChannelData message whose payload fits in
	// the datagram; the worker relays it.
	clientChannelData
)

const (
	stunHeaderSize  = 20
	stunMagicCookie = 0x2112A442
)

// classifyClient tells what datagram b is. For ChannelData it also returns
// the channel number and the payload length. The checks are the cheap ones
// that keep junk out of pion's queue: a STUN message is at least a header,
// carries the magic cookie and declares exactly the rest of the datagram,
// a multiple of 4 (attributes are padded); a ChannelData message declares
// no more than the datagram holds (over UDP it may be padded beyond, RFC
// 8656 §12.5).
func classifyClient(b []byte) (kind clientKind, num uint16, ln int) {
	if len(b) == 0 {
		return clientMalformed, 0, 0
	}
	switch b[0] >> 6 {
	case 0:
		if len(b) < stunHeaderSize || binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
			return clientMalformed, 0, 0
		}
		if l := int(binary.BigEndian.Uint16(b[2:4])); l != len(b)-stunHeaderSize || l%4 != 0 {
			return clientMalformed, 0, 0
		}
		return clientSTUN, 0, 0
	case 1: // channel numbers 0x4000-0x7FFF
		if len(b) < 4 {
			return clientMalformed, 0, 0
		}
		ln = int(binary.BigEndian.Uint16(b[2:4]))
		if 4+ln > len(b) {
			return clientMalformed, 0, 0
		}
		return clientChannelData, binary.BigEndian.Uint16(b[0:2]), ln
	}
	return clientMalformed, 0, 0
}
