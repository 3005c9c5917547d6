package srtpcheck

import (
	"github.com/mediaedge/mediaedge/bench/capture"
)

// splitGSO splits b, one captured UDP payload, into the datagrams of a UDP
// GSO message, or returns nil when it is not one. A sender using UDP_SEGMENT
// passes several datagrams of equal size (the last may be shorter) to the
// kernel in one message; on loopback and veth the message travels, and is
// captured, unsegmented, and the receiving socket gets the datagrams one by
// one. Nothing in the capture marks such a message, so the split is accepted
// only when every segment looks like RTP and authenticates with one of keys.
func splitGSO(b []byte, keys [][]Key) [][]byte {
	for size := 12; size < len(b); size++ {
		if !capture.LooksLikeRTP(b[size:]) {
			continue
		}
		var segs [][]byte
		ok := true
		for off := 0; off < len(b); off += size {
			seg := b[off:min(off+size, len(b))]
			if !capture.LooksLikeRTP(seg) {
				ok = false
				break
			}
			segs = append(segs, seg)
		}
		if !ok {
			continue
		}
		for _, seg := range segs {
			if !OpensWithAny(seg, keys...) {
				ok = false
				break
			}
		}
		if ok {
			return segs
		}
	}
	return nil
}

// SplitGSO is splitGSO for callers outside bench: e2e checks every
// datagram captured on an uplink, where the gateway's UDP GSO messages
// appear whole.
func SplitGSO(b []byte, sets ...[]Key) [][]byte { return splitGSO(b, sets) }
