package webrtc

import (
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestBrowserICERestartThroughGateway restarts ICE in the middle of a
// call, as a browser does when its network changes: a new offer with new
// ICE credentials goes through ng offer and answer like the first, and
// media must flow both ways again, on the same ports and SDES keys
// toward ffmpeg (the SIP side is not re-keyed by the browser's restart),
// and still past the gateway's DTLS handshake timeout.
func TestBrowserICERestartThroughGateway(t *testing.T) {
	findChromium(t)
	findFFmpeg(t)
	e := startEdge(t)
	c := startCall(t)
	g := setUpCall(t, e, c, "passive", "PCMU", c.peer.TxKey)
	c.waitMedia(t, sessionString{e, t})
	first, _ := parseSDP(c.offer)

	_, page0, _ := c.sig.snapshot()
	peer0 := c.peer.heardTrack()
	c.sig.restartICE()
	offer := c.sig.waitOffer(30*time.Second, nil)
	o, err := parseSDP(offer)
	if err != nil {
		t.Fatal(err)
	}
	if o.attr("ice-ufrag") == first.attr("ice-ufrag") {
		t.Fatalf("the restart offer keeps ice-ufrag %s", o.attr("ice-ufrag"))
	}
	r := e.ngCall(t, map[string]any{
		"command": "offer", "call-id": g.id, "from-tag": "browser", "sdp": offer,
		"transport-protocol": "RTP/SAVP", "ICE": "remove",
		"rtcp-mux": []any{"demux"}, "SDES": []any{"on"},
	})
	sdp, _ := r["sdp"].(string)
	sip, err := parseSDP(sdp)
	if err != nil {
		t.Fatalf("the re-offer toward the SIP side: %v\n%s", err, sdp)
	}
	tag, key, err := sip.cryptoFor(sdesSuite)
	if err != nil {
		t.Fatal(err)
	}
	if sip.Addr != g.sip.Addr || key.inline() != g.toPeer.inline() {
		t.Errorf("the browser's ICE restart moved or re-keyed the SIP side: %s (was %s), key changed %v",
			sip.Addr, g.sip.Addr, key.inline() != g.toPeer.inline())
	}
	r = e.ngCall(t, map[string]any{
		"command": "answer", "call-id": g.id, "from-tag": "browser", "to-tag": "sdes",
		"sdp":                sdesAnswer(c.peer.Addr(), tag, c.peer.TxKey, c.peer.Codec),
		"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "DTLS": "passive",
		"rtcp-mux": []any{"require"},
	})
	answer, _ := r["sdp"].(string)
	web, err := parseSDP(answer)
	if err != nil {
		t.Fatalf("the answer to the restart: %v\n%s", err, answer)
	}
	if web.attr("ice-ufrag") == g.web.attr("ice-ufrag") || web.attr("ice-pwd") == g.web.attr("ice-pwd") {
		t.Errorf("the gateway answers an ICE restart with its old credentials (ufrag %s)", web.attr("ice-ufrag"))
	}
	t.Logf("restart: browser ufrag %s -> %s, gateway ufrag %s -> %s, gateway at %s (was %s)",
		first.attr("ice-ufrag"), o.attr("ice-ufrag"), g.web.attr("ice-ufrag"), web.attr("ice-ufrag"), web.Addr, g.web.Addr)
	restarted := time.Now()
	c.sig.sendAnswer(answer)

	// Media after the restart: as many new blocks with the tone as make
	// wantTone at each end, and ICE and DTLS connected again.
	var st pageStats
	var page, peer toneTrack
	took, ok := testutil.Poll(mediaWait, func() bool {
		st, page, _ = c.sig.snapshot()
		peer = c.peer.heardTrack()
		return c.sig.pageFailed() != nil ||
			(float64(page.hits-page0.hits)*page.blockDur >= wantTone.Seconds() &&
				float64(peer.hits-peer0.hits)*peer.blockDur >= wantTone.Seconds() &&
				st.DTLS == "connected" && (st.ICE == "connected" || st.ICE == "completed"))
	})
	if err := c.sig.pageFailed(); err != nil {
		t.Fatal(err)
	}
	t.Logf("after the restart (%v): browser %+v pair %+v", took.Round(time.Millisecond), st, st.Pair)
	t.Logf("page heard %v", &page)
	t.Logf("SDES receiver heard %v", &peer)
	if !ok {
		t.Fatalf("no media both ways within %v of the restart's answer", mediaWait)
	}
	// Past the handshake timeout (a gateway that took the restart for a
	// re-key would wait for a handshake the browser does not start: it
	// keeps its DTLS association), and at least 2 s more, in which both ends
	// must hear their tone.
	time.Sleep(max(time.Until(restarted.Add(handshakeTimeout+2*time.Second)), 2*time.Second))
	stLater, pageLater, _ := c.sig.snapshot()
	peerLater := c.peer.heardTrack()
	t.Logf("%v after the restart: browser %+v; page heard %v; SDES receiver heard %v",
		time.Since(restarted).Round(time.Millisecond), stLater, &pageLater, &peerLater)
	ss := e.sessions(t)
	if len(ss) != 1 {
		t.Fatalf("%d sessions after the restart, want 1", len(ss))
	}
	d, sd, _ := ss[0].legs()
	t.Logf("gateway %v after the restart: dtls leg %+v %+v; sdes leg %+v", time.Since(restarted).Round(time.Millisecond), d, d.DTLS, sd)
	switch {
	case d.DTLS == nil:
		t.Error("the session's DTLS leg has no DTLS state after the restart")
	case d.DTLS.State != "connected" || d.DTLS.Handshakes != 1:
		// Chromium keeps its DTLS association across an ICE restart
		// (RFC 8842), and so must the gateway: a handshake it waited
		// for would time out and mark the leg failed.
		t.Errorf("the gateway's DTLS leg is %q (%s) after %d handshakes, want connected after 1: the browser kept its association",
			d.DTLS.State, d.DTLS.Setup, d.DTLS.Handshakes)
	}
	if got := float64(pageLater.hits-page.hits) * page.blockDur; got < 1 {
		t.Errorf("the page heard the tone for %.2fs in the last 2 s or more", got)
	}
	if got := float64(peerLater.hits-peer.hits) * peer.blockDur; got < 1 {
		t.Errorf("the SDES receiver heard the tone for %.2fs in the last 2 s or more", got)
	}
	c.sig.stopPage(10 * time.Second)
	if g.tap != nil {
		checkLegKeys(t, g.tap.stop(), g.web.Addr.Port(), sdesLegKeys{g.sip.Addr.Port(), g.toPeer, c.peer.TxKey})
	}
	g.delete(t)
}
