package webrtc

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestBrowserBundleThroughGateway is the real-browser test of BUNDLE:
// Chromium sends its microphone and camera on one transport (max-bundle,
// so a gateway that does not bundle fails the call), the gateway splits
// them into two SDES m= lines toward the SIP side, each with its own
// keys, and ffmpeg answers each (PCMU and VP8). Then: both tones are
// heard as in the audio-only test, ffmpeg decodes the browser's video and
// the page decodes ffmpeg's, the browser has one transport, the gateway
// has one session per m= line with its DTLS leg connected and packets
// both ways, and the capture's keys check holds on all three ports.
func TestBrowserBundleThroughGateway(t *testing.T) {
	findChromium(t)
	findFFmpeg(t)
	e := startEdge(t)
	c := startCallWith(t, true)
	vpeer := newSDESPeer(t, 0, 0)
	var vframes videoFrames
	id := fmt.Sprintf("webrtc-%x", rand.Uint64())

	r := e.ngCall(t, map[string]any{
		"command": "offer", "call-id": id, "from-tag": "browser", "sdp": c.offer,
		"transport-protocol": "RTP/SAVP", "ICE": "remove",
		"rtcp-mux": []any{"demux"}, "SDES": []any{"on"},
	})
	sipSDP, _ := r["sdp"].(string)
	sip, err := parseSections(sipSDP)
	if err != nil || len(sip) != 2 || sip[0].Kind != "audio" || sip[1].Kind != "video" {
		t.Fatalf("the offer toward the SIP side: want audio and video m= lines: %v\n%s", err, sipSDP)
	}
	if sip[0].Addr == sip[1].Addr || strings.Contains(sipSDP, "BUNDLE") {
		t.Errorf("the SIP side's offer bundles (%s, %s):\n%s", sip[0].Addr, sip[1].Addr, sipSDP)
	}
	aTag, aToPeer, err := sip[0].cryptoFor(sdesSuite)
	if err != nil {
		t.Fatal(err)
	}
	vTag, vToPeer, err := sip[1].cryptoFor(sdesSuite)
	if err != nil {
		t.Fatal(err)
	}
	vp8, err := sip[1].rtpmapPT("VP8/90000")
	if err != nil {
		t.Fatalf("the SIP side's video: %v", err)
	}
	t.Logf("offer toward the SIP side: audio %s, video %s (VP8 %d)", sip[0].Addr, sip[1].Addr, vp8)
	c.peer.SetRemote(sip[0].Addr)
	c.peer.Receive(aToPeer)
	vpeer.SetRemote(sip[1].Addr)
	vpeer.ReceiveVideo(vToPeer, vp8, &vframes)

	answer := sdpHead(c.peer.Addr()) +
		sdesMedia("audio", c.peer.Addr(), aTag, c.peer.TxKey, c.peer.Codec.rtpmapLine(), "a=ptime:20\r\n") +
		sdesMedia("video", vpeer.Addr(), vTag, vpeer.TxKey, fmt.Sprintf("%d VP8/90000", vp8), "")
	r = e.ngCall(t, map[string]any{
		"command": "answer", "call-id": id, "from-tag": "browser", "to-tag": "sdes", "sdp": answer,
		"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "DTLS": "passive",
		"rtcp-mux": []any{"require"},
	})
	webSDP, _ := r["sdp"].(string)
	web, err := parseSections(webSDP)
	if err != nil || len(web) != 2 {
		t.Fatalf("the answer toward the browser: want two m= lines: %v\n%s", err, webSDP)
	}
	group := strings.Fields(web[0].attr("group"))
	mids := []string{web[0].attr("mid"), web[1].attr("mid")}
	if len(group) != 3 || group[0] != "BUNDLE" || !slices.Contains(group, mids[0]) || !slices.Contains(group, mids[1]) ||
		web[0].Addr != web[1].Addr || !web[0].has("fingerprint") || !web[1].has("rtcp-mux") {
		t.Errorf("the answer toward the browser does not bundle both m= lines (group %q, mids %q, %s and %s):\n%s",
			web[0].attr("group"), mids, web[0].Addr, web[1].Addr, webSDP)
	}
	for _, k := range []sdesKey{aToPeer, vToPeer, c.peer.TxKey, vpeer.TxKey} {
		if strings.Contains(webSDP, k.inline()) {
			t.Fatal("an SDES key is in the answer toward the browser")
		}
	}

	tap := captureLo(t, web[0].Addr.Port(), sip[0].Addr.Port(), sip[1].Addr.Port())
	c.peer.Send(sdesHz, 0x5de5)
	vpeer.SendVideo(vp8, 0x51de0)
	c.sig.sendAnswer(webSDP)
	st := c.waitMedia(t, sessionString{e, t})

	// Video both ways: 30 frames is two seconds of ffmpeg's and a few of
	// the browser's, which starts low while it estimates bandwidth.
	testutil.WaitFor(t, "30 video frames decoded at each end", 30*time.Second, func() bool {
		st, _, _ = c.sig.snapshot()
		return st.VideoInFrames >= 30 && vframes.n.Load() >= 30
	})
	t.Logf("video: page decoded %d frames %dx%d %s, sent %d %s; ffmpeg decoded %d; browser transports %d; video peer: %v",
		st.VideoInFrames, st.VideoInWidth, st.VideoInHeight, st.VideoInCodec, st.VideoOutFrames, st.VideoOutCodec,
		vframes.n.Load(), st.Transports, vpeer)
	if st.Transports != 1 {
		t.Errorf("the browser has %d transports, want 1 (BUNDLE)", st.Transports)
	}
	if st.VideoInWidth != videoW || st.VideoInHeight != videoH || !strings.EqualFold(st.VideoInCodec, "video/VP8") {
		t.Errorf("the page decodes %dx%d %s, want %dx%d video/VP8", st.VideoInWidth, st.VideoInHeight, st.VideoInCodec, videoW, videoH)
	}

	var ss []edgeSession
	testutil.WaitFor(t, "two sessions, their DTLS legs connected, packets both ways on every leg", 20*time.Second, func() bool {
		ss = e.sessions(t)
		if len(ss) != 2 {
			return false
		}
		for _, s := range ss {
			d, sd, ok := s.legs()
			if !ok || d.DTLS == nil || d.DTLS.State != "connected" || d.Counters.PacketsIn == 0 || d.Counters.PacketsOut == 0 ||
				sd.Counters.PacketsIn == 0 || sd.Counters.PacketsOut == 0 {
				return false
			}
		}
		return true
	})
	for _, s := range ss {
		d, sd, _ := s.legs()
		t.Logf("gateway session %s: dtls leg %s %+v %+v; sdes leg %s %+v", s.ID, d.Local, d.Counters, *d.DTLS, sd.Local, sd.Counters)
		if d.Local != web[0].Addr.String() || d.Counters.AuthFailures != 0 || sd.Counters.AuthFailures != 0 {
			t.Errorf("session %s: DTLS leg on %s (want the bundle's %s), auth failures %d and %d",
				s.ID, d.Local, web[0].Addr, d.Counters.AuthFailures, sd.Counters.AuthFailures)
		}
	}

	c.sig.stopPage(10 * time.Second)
	if tap != nil {
		checkLegKeys(t, tap.stop(), web[0].Addr.Port(),
			sdesLegKeys{sip[0].Addr.Port(), aToPeer, c.peer.TxKey}, sdesLegKeys{sip[1].Addr.Port(), vToPeer, vpeer.TxKey})
	}
	e.ngCall(t, map[string]any{"command": "delete", "call-id": id, "from-tag": "browser"})
	testutil.WaitFor(t, "the sessions to end after delete", 10*time.Second, func() bool { return len(e.sessions(t)) == 0 })
}
