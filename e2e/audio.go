package e2e

import "math"

// Audio frames: 20 ms of G.711 µ-law (PCMU, RTP payload type 0) at 8 kHz,
// the payload of the audio streams. Each stream carries its own tone, so
// a payload found on the wrong stream, or in clear on the wire, is
// recognisable.
const (
	samplesPerFrame = 160
	sampleRate      = 8000
	payloadTypePCMU = 0
)

// audioFrame returns frame n of a sine tone of hz hertz at half scale,
// µ-law encoded. It is deterministic: a receiver computes the frame it
// expects from the RTP timestamp.
func audioFrame(hz float64, n uint32) []byte {
	b := make([]byte, samplesPerFrame)
	for i := range b {
		t := float64(uint64(n)*samplesPerFrame+uint64(i)) / sampleRate
		b[i] = linearToULaw(int16(16384 * math.Sin(2*math.Pi*hz*t)))
	}
	return b
}

// linearToULaw encodes a 16-bit sample as G.711 µ-law (ITU-T G.711,
// with the usual bias of 0x84 and clip at 32635).
func linearToULaw(s int16) byte {
	const bias, clip = 0x84, 32635
	x := int(s)
	sign := 0
	if x < 0 {
		x, sign = -x, 0x80
	}
	if x > clip {
		x = clip
	}
	x += bias
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (x >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}
