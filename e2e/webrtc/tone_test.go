package webrtc

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"testing"
)

// purity is the share of x's power that is a sine at freq Hz (0..1):
// Goertzel evaluates the Hann-windowed block's spectrum exactly at freq
// (no bin rounding), which gives the sine's amplitude, and that is set
// against the block's RMS. A clean tone reads near 1, silence or a tone
// elsewhere near 0. It also returns the block's RMS (full scale = 1).
func purity(x []float64, rate, freq float64) (p, rms float64) {
	n := len(x)
	if n == 0 {
		return 0, 0
	}
	w := 2 * math.Pi * freq / rate
	c := 2 * math.Cos(w)
	var s1, s2, sumW, energy float64
	for i, v := range x {
		energy += v * v
		h := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n-1))
		sumW += h
		s0 := h*v + c*s1 - s2
		s2, s1 = s1, s0
	}
	mag2 := s1*s1 + s2*s2 - c*s1*s2
	rms = math.Sqrt(energy / float64(n))
	if rms == 0 {
		return 0, 0
	}
	amp := 2 * math.Sqrt(math.Max(mag2, 0)) / sumW
	return math.Min(amp*amp/2/(rms*rms), 1), rms
}

// sine returns n samples of a sine at freq Hz with peak amp.
func sine(n int, rate, freq, amp float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = amp * math.Sin(2*math.Pi*freq*float64(i)/rate)
	}
	return x
}

// writeToneWAV writes a mono 16-bit PCM WAV of secs seconds of a sine at
// freq Hz, at half of full scale, for Chromium's fake capture device.
// secs*freq must be whole so that the file loops without a click.
func writeToneWAV(path string, rate, freq float64, secs int) error {
	x := sine(int(rate)*secs, rate, freq, 0.5)
	data := make([]byte, 44+2*len(x))
	le := binary.LittleEndian
	copy(data[0:], "RIFF")
	le.PutUint32(data[4:], uint32(36+2*len(x)))
	copy(data[8:], "WAVEfmt ")
	le.PutUint32(data[16:], 16)
	le.PutUint16(data[20:], 1) // PCM
	le.PutUint16(data[22:], 1) // mono
	le.PutUint32(data[24:], uint32(rate))
	le.PutUint32(data[28:], uint32(rate)*2)
	le.PutUint16(data[32:], 2)
	le.PutUint16(data[34:], 16)
	copy(data[36:], "data")
	le.PutUint32(data[40:], uint32(2*len(x)))
	for i, v := range x {
		le.PutUint16(data[44+2*i:], uint16(int16(math.Round(v*32767))))
	}
	return os.WriteFile(path, data, 0o644)
}

// toneTrack follows blocks of audio and says how long a tone was present
// in them: a block counts when its purity at the tone is at least
// minPurity and its RMS at least minRMS. A run of the tone survives one
// block without it (a lost or concealed packet, a jitter-buffer
// adjustment on a busy machine: 50-100 ms) but not two; the block
// missed does not add to the run. It is not safe for concurrent use.
type toneTrack struct {
	freq, rate float64
	blockDur   float64 // seconds per block

	blocks, hits  int // blocks seen, blocks with the tone
	run, longest  int // current and longest run of hits (see add)
	misses        int // blocks without the tone since the last hit
	maxP, sumRMS  float64
	otherHits     int // blocks where the other frequency dominates
	other         float64
	firstHitBlock int
	// pattern is one character a block, for the log: '#' the tone,
	// 'o' the other frequency, '.' quiet, '~' something else. It keeps
	// the first maxPattern blocks.
	pattern []byte
}

const maxPattern = 600

const (
	minPurity = 0.7
	minRMS    = 0.01 // -40 dBFS
)

func newToneTrack(rate, freq, other, blockDur float64) *toneTrack {
	return &toneTrack{rate: rate, freq: freq, other: other, blockDur: blockDur, firstHitBlock: -1}
}

// add takes one block.
func (t *toneTrack) add(x []float64) {
	p, rms := purity(x, t.rate, t.freq)
	t.addMeasured(p, rms, func() float64 { q, _ := purity(x, t.rate, t.other); return q })
}

// addMeasured takes one block measured elsewhere (the page): its purity at
// the tone, its RMS and, lazily, its purity at the other frequency.
func (t *toneTrack) addMeasured(p, rms float64, otherP func() float64) {
	t.blocks++
	t.maxP = math.Max(t.maxP, p)
	mark := byte('~')
	defer func() {
		if len(t.pattern) < maxPattern {
			t.pattern = append(t.pattern, mark)
		}
	}()
	if rms < minRMS {
		mark = '.'
	}
	if p >= minPurity && rms >= minRMS {
		mark = '#'

		if t.firstHitBlock < 0 {
			t.firstHitBlock = t.blocks - 1
		}
		t.hits++
		t.misses = 0
		t.run++
		t.sumRMS += rms
		t.longest = max(t.longest, t.run)
		return
	}
	if t.misses++; t.misses > 1 {
		t.run = 0
	}
	if rms >= minRMS && otherP() >= minPurity {
		mark = 'o'
		t.otherHits++
	}
}

// longestSecs is the longest stretch of the tone seen, in seconds.
func (t *toneTrack) longestSecs() float64 { return float64(t.longest) * t.blockDur }

// String summarises the track for a failure message.
func (t *toneTrack) String() string {
	mean := 0.0
	if t.hits > 0 {
		mean = t.sumRMS / float64(t.hits)
	}
	return fmt.Sprintf("%v Hz in %d of %d blocks, longest %.2fs, best purity %.2f, mean RMS %.3f; %v Hz dominant in %d blocks; blocks %s",
		t.freq, t.hits, t.blocks, t.longestSecs(), t.maxP, mean, t.other, t.otherHits, t.pattern)
}

func TestPurityFindsTheTone(t *testing.T) {
	const rate = 8000
	noise := make([]float64, 400)
	seed := uint32(1)
	for i := range noise {
		seed = seed*1664525 + 1013904223
		noise[i] = (float64(seed>>16)/65536 - 0.5) * 0.2
	}
	mix := sine(400, rate, 600, 0.3)
	for i := range mix {
		mix[i] += sine(400, rate, 1000, 0.3)[i]
	}
	tests := []struct {
		name   string
		x      []float64
		freq   float64
		lo, hi float64
	}{
		{"the tone itself", sine(400, rate, 600, 0.5), 600, 0.95, 1},
		{"a quiet tone", sine(400, rate, 1000, 0.02), 1000, 0.95, 1},
		{"another tone", sine(400, rate, 1000, 0.5), 600, 0, 0.05},
		{"a near tone", sine(400, rate, 700, 0.5), 600, 0, 0.1},
		{"noise", noise, 600, 0, 0.1},
		{"silence", make([]float64, 400), 600, 0, 0},
		{"half of a mix", mix, 600, 0.4, 0.6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := purity(tc.x, rate, tc.freq)
			if p < tc.lo || p > tc.hi {
				t.Errorf("purity at %v Hz = %.3f, want %.2f..%.2f", tc.freq, p, tc.lo, tc.hi)
			}
		})
	}
}

func TestToneTrackCountsRuns(t *testing.T) {
	tr := newToneTrack(8000, 600, 1000, 0.05)
	for range 3 {
		tr.add(sine(400, 8000, 600, 0.5))
	}
	tr.add(make([]float64, 400))
	for range 5 {
		tr.add(sine(400, 8000, 600, 0.5))
	}
	tr.add(sine(400, 8000, 1000, 0.5))
	tr.add(sine(400, 8000, 600, 0.001)) // too quiet: the second miss ends the run
	for range 7 {
		tr.add(sine(400, 8000, 600, 0.5))
	}
	if tr.hits != 15 || tr.longest != 8 || tr.run != 7 || tr.otherHits != 1 || tr.blocks != 18 {
		t.Fatalf("track: %v (hits %d longest %d run %d other %d)", tr, tr.hits, tr.longest, tr.run, tr.otherHits)
	}
}
