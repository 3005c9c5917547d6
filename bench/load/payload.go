package load

import "encoding/binary"

// Synthetic payloads carry the stream and packet index, so that every
// received packet can be checked byte for byte without keeping a copy of
// what was sent:
//
//	magic "MEB1" | stream id (4) | packet index (4) | pattern to the end
const (
	payloadMagic = 0x4d454231
	// minPayload is the smallest synthetic payload.
	minPayload = 12
)

// fillPayload writes the synthetic payload of packet k of stream s into b.
func fillPayload(b []byte, s, k uint32) {
	binary.BigEndian.PutUint32(b, payloadMagic)
	binary.BigEndian.PutUint32(b[4:], s)
	binary.BigEndian.PutUint32(b[8:], k)
	x := s*0x9e3779b1 ^ k*0x85ebca77 | 1
	for i := minPayload; i < len(b); i++ {
		// xorshift32: cheap, and different for every stream and packet
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
}

// checkPayload reports whether b is exactly the synthetic payload of packet
// k of stream s, with size bytes.
func checkPayload(b []byte, s, k uint32, size int) bool {
	if len(b) != size || len(b) < minPayload ||
		binary.BigEndian.Uint32(b) != payloadMagic ||
		binary.BigEndian.Uint32(b[4:]) != s || binary.BigEndian.Uint32(b[8:]) != k {
		return false
	}
	x := s*0x9e3779b1 ^ k*0x85ebca77 | 1
	for i := minPayload; i < len(b); i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		if b[i] != byte(x) {
			return false
		}
	}
	return true
}

// payloadIndex returns the stream and packet index a synthetic payload
// claims, if it is one.
func payloadIndex(b []byte) (s, k uint32, ok bool) {
	if len(b) < minPayload || binary.BigEndian.Uint32(b) != payloadMagic {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:]), true
}
