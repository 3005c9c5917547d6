package webrtc

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	browserHz = 600  // the browser's fake microphone
	sdesHz    = 1000 // ffmpeg's sine toward the browser
	// wantTone is how long each tone must be heard without a break (one
	// block missed is not a break: see toneTrack).
	wantTone = 2 * time.Second
	// mediaWait bounds the whole wait for ICE, DTLS and both tones: a
	// busy machine starts Chromium slowly.
	mediaWait = 90 * time.Second
)

// call is one call under test: the browser on one side, the SDES peer on
// the other, and whatever the test puts between them.
type call struct {
	sig   *signal
	peer  *sdesPeer
	offer string // the browser's
}

// startCall starts the page's server, the SDES peer's sockets and the
// browser, and returns once the browser has offered. It skips t when
// chromium or ffmpeg is missing, before starting anything.
func startCall(t *testing.T) *call { t.Helper(); return startCallWith(t, false) }

// startCallWith is startCall; with video the browser sends and receives
// its camera too, on one transport with the audio (max-bundle).
func startCallWith(t *testing.T, video bool) *call {
	t.Helper()
	findChromium(t)
	findFFmpeg(t)
	wav := filepath.Join(t.TempDir(), "mic.wav")
	if err := writeToneWAV(wav, 48000, browserHz, 10); err != nil {
		t.Fatal(err)
	}
	c := &call{sig: serveSignal(t, sdesHz, browserHz), peer: newSDESPeer(t, browserHz, sdesHz)}
	url := c.sig.url
	if video {
		url += "&video=1"
	}
	b := startChromium(t, url, wav)
	c.offer = c.sig.waitOffer(60*time.Second, b.exited)
	return c
}

// waitMedia waits for media both ways and checks what each end measured:
// the SDES receiver decoded the browser's tone and the page heard the
// SDES sender's, each for wantTone without a break and neither hearing
// its own tone come back; the browser's transport is DTLS-SRTP over a
// nominated, succeeded candidate pair; audio packets flowed both ways.
// more describes the middle of the call for failure messages.
func (c *call) waitMedia(t *testing.T, more fmt.Stringer) pageStats {
	t.Helper()
	var st pageStats
	var pageHeard, peerHeard toneTrack
	took, ok := testutil.Poll(mediaWait, func() bool {
		if c.sig.pageFailed() != nil {
			return true
		}
		st, pageHeard, _ = c.sig.snapshot()
		peerHeard = c.peer.heardTrack()
		return st.DTLS == "connected" && pageHeard.longestSecs() >= wantTone.Seconds() &&
			peerHeard.longestSecs() >= wantTone.Seconds()
	})
	if err := c.sig.pageFailed(); err != nil {
		t.Fatal(err)
	}
	t.Logf("media both ways %v after the answer", took.Round(time.Millisecond))
	t.Logf("browser stats: %+v pair %+v", st, st.Pair)
	t.Logf("SDES receiver heard %v", &peerHeard)
	t.Logf("page heard %v", &pageHeard)
	t.Logf("SDES peer: %v; %v", c.peer, more)
	if !ok {
		t.Errorf("no media both ways within %v", mediaWait)
	}
	if got := peerHeard.longestSecs(); got < wantTone.Seconds() {
		t.Errorf("the SDES receiver heard the browser's %d Hz for %.2fs at most, want %v", browserHz, got, wantTone)
	}
	if got := pageHeard.longestSecs(); got < wantTone.Seconds() {
		t.Errorf("the page heard the SDES side's %d Hz for %.2fs at most, want %v", sdesHz, got, wantTone)
	}
	// Neither end hears its own tone: media is crossed, not looped.
	if peerHeard.otherHits > 0 {
		t.Errorf("the SDES receiver heard its own side's %d Hz in %d blocks", sdesHz, peerHeard.otherHits)
	}
	if pageHeard.otherHits > 0 {
		t.Errorf("the page heard its own %d Hz in %d blocks", browserHz, pageHeard.otherHits)
	}
	if st.DTLS != "connected" || st.SRTPCipher == "" {
		t.Errorf("browser transport: dtls %q, SRTP cipher %q; want connected with a cipher", st.DTLS, st.SRTPCipher)
	}
	if st.ICE != "connected" && st.ICE != "completed" {
		t.Errorf("browser ICE state %q", st.ICE)
	}
	if st.Pair == nil || st.Pair.State != "succeeded" || !st.Pair.Nominated {
		t.Errorf("browser's selected candidate pair: %+v, want succeeded and nominated", st.Pair)
	}
	if st.InPackets == 0 || st.OutPackets == 0 {
		t.Errorf("browser audio packets: in %d, out %d", st.InPackets, st.OutPackets)
	}
	want := "audio/" + c.peer.Codec.name
	for _, codec := range []string{st.InCodec, st.OutCodec} {
		if !strings.EqualFold(codec, want) {
			t.Errorf("browser codecs in %q, out %q: want %s both ways", st.InCodec, st.OutCodec, want)
			break
		}
	}
	return st
}

// TestBrowserThroughStandIn proves the harness with a pion/webrtc stand-in
// for the gateway: Chromium's offer is answered by pion in this process,
// which bridges the audio to and from ffmpeg as SDES-keyed SRTP.
func TestBrowserThroughStandIn(t *testing.T) {
	c := startCall(t)
	toPeer := newSDESKey(t)
	s := newStandIn(t, c.offer, c.peer.Addr(), toPeer, c.peer.TxKey)
	c.peer.SetRemote(s.SIPAddr())
	c.peer.Receive(toPeer)
	c.peer.Send(sdesHz, 0x5de5)
	c.sig.sendAnswer(s.Answer)
	c.waitMedia(t, s)
	c.sig.stopPage(10 * time.Second)
}

// TestStandInWrongKeyIsSilent is the check that the tone checks can
// fail: one end is given a key its sender does not use, so every packet
// toward it fails SRTP authentication and it must hear nothing, while
// the other direction plays.
func TestStandInWrongKeyIsSilent(t *testing.T) {
	for _, toBrowser := range []bool{false, true} {
		name := map[bool]string{false: "toward the SDES receiver", true: "toward the browser"}[toBrowser]
		t.Run(name, func(t *testing.T) {
			c := startCall(t)
			toPeer, rxKey, fromPeer := newSDESKey(t), sdesKey{}, c.peer.TxKey
			if toBrowser {
				fromPeer, rxKey = newSDESKey(t), toPeer // the stand-in opens nothing of ffmpeg's
			} else {
				rxKey = newSDESKey(t) // ffmpeg opens nothing of the stand-in's
			}
			s := newStandIn(t, c.offer, c.peer.Addr(), toPeer, fromPeer)
			c.peer.SetRemote(s.SIPAddr())
			c.peer.Receive(rxKey)
			c.peer.Send(sdesHz, 0x5de5)
			c.sig.sendAnswer(s.Answer)
			// The working direction proves the call is up; the broken
			// one has had as long to be heard.
			testutil.WaitFor(t, "the working direction's tone and 100 packets the other way", mediaWait, func() bool {
				_, page, _ := c.sig.snapshot()
				peer := c.peer.heardTrack()
				if c.sig.pageFailed() != nil {
					return true
				}
				if toBrowser {
					return peer.longestSecs() >= wantTone.Seconds() && s.decryptFailed.Load() >= 100
				}
				return page.longestSecs() >= wantTone.Seconds() && c.peer.toRx.Load() >= 100
			})
			if err := c.sig.pageFailed(); err != nil {
				t.Fatal(err)
			}
			_, page, _ := c.sig.snapshot()
			peer := c.peer.heardTrack()
			t.Logf("page heard %v; SDES receiver heard %v; %v; %v", &page, &peer, c.peer, s)
			if toBrowser && page.hits != 0 {
				t.Errorf("the page heard the tone the stand-in could not open: %v", &page)
			}
			if !toBrowser && peer.hits != 0 {
				t.Errorf("the SDES receiver heard the tone under the wrong key: %v", &peer)
			}
			c.sig.stopPage(10 * time.Second)
		})
	}
}
