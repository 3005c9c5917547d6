package webrtc

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestBrowserThroughGateway is the real-browser acceptance test of the
// gateway's DTLS-SRTP legs. Chromium offers; the test drives mediaedge
// over ng exactly as Kamailio's rtpengine module would for a WebRTC
// caller and a SIP callee: the offer toward the SIP side asks for SDES
// (RTP/SAVP, ICE removed, RTCP demuxed), the answer toward the browser
// for DTLS-SRTP (ICE forced, the gateway's DTLS role as given, rtcp-mux
// required). ffmpeg speaks the SDES side with its own key. Then: each end
// hears the other's tone, the browser's transport is DTLS-SRTP over a
// nominated pair in the role the gateway left it, the gateway's session
// shows the handshake done and packets both ways on both legs, and no
// packet on the browser leg opens with either SDES key.
func TestBrowserThroughGateway(t *testing.T) {
	findChromium(t)
	findFFmpeg(t)
	e := startEdge(t)
	for _, tc := range []struct{ gateway, browser, codec string }{
		{"passive", "client", "PCMU"}, // as rtpengine is usually run toward browsers
		{"active", "server", "PCMU"},
		{"passive", "client", "opus"},
	} {
		t.Run("DTLS "+tc.gateway+" "+tc.codec, func(t *testing.T) {
			c := startCall(t)
			g := setUpCall(t, e, c, tc.gateway, tc.codec, c.peer.TxKey)
			st := c.waitMedia(t, sessionString{e, t})
			if st.DTLSRole != tc.browser {
				t.Errorf("the browser is DTLS %q, want %s (the gateway answered %s)", st.DTLSRole, tc.browser, tc.gateway)
			}

			// The gateway's view, once both legs have carried media both ways.
			var s edgeSession
			testutil.WaitFor(t, "the session's DTLS leg connected with packets both ways on both legs", 20*time.Second, func() bool {
				ss := e.sessions(t)
				if len(ss) != 1 {
					return false
				}
				s = ss[0]
				d, sd, ok := s.legs()
				return ok && d.DTLS != nil && d.DTLS.State == "connected" &&
					d.Counters.PacketsIn > 0 && d.Counters.PacketsOut > 0 && sd.Counters.PacketsIn > 0 && sd.Counters.PacketsOut > 0
			})
			d, sd, _ := s.legs()
			t.Logf("gateway: dtls leg %+v %+v; sdes leg %+v", d, *d.DTLS, sd)
			if d.DTLS.Setup != tc.gateway || d.DTLS.Profile == "" || d.DTLS.Handshakes != 1 {
				t.Errorf("the gateway's DTLS leg: %+v, want %s, a profile, one handshake", *d.DTLS, tc.gateway)
			}
			if sd.Suite != sdesSuite || d.Counters.AuthFailures != 0 || sd.Counters.AuthFailures != 0 {
				t.Errorf("SDES leg suite %q, auth failures dtls %d sdes %d", sd.Suite, d.Counters.AuthFailures, sd.Counters.AuthFailures)
			}
			// Keys never in a listing: neither SDES key, in base64 or hex.
			listing := e.sessionsJSON(t)
			for _, k := range []sdesKey{g.toPeer, c.peer.TxKey} {
				if strings.Contains(listing, k.inline()) || strings.Contains(strings.ToLower(listing), hex.EncodeToString(k.Key)) {
					t.Error("an SDES key is in the gateway's session listing")
				}
			}

			c.sig.stopPage(10 * time.Second)
			if g.tap != nil {
				checkLegKeys(t, g.tap.stop(), g.web.Addr.Port(), sdesLegKeys{g.sip.Addr.Port(), g.toPeer, c.peer.TxKey})
			}
			g.delete(t)
		})
	}
}

// TestGatewayWrongSDESKeyIsSilent is the gateway's check that can fail:
// the SDES side's answer announces a key ffmpeg's sender does not use, so
// the gateway must refuse (and count) every packet from it and the page
// must hear nothing, while the browser's audio still reaches ffmpeg.
func TestGatewayWrongSDESKeyIsSilent(t *testing.T) {
	findChromium(t)
	findFFmpeg(t)
	e := startEdge(t)
	c := startCall(t)
	g := setUpCall(t, e, c, "passive", "PCMU", newSDESKey(t))
	testutil.WaitFor(t, "the browser's tone at ffmpeg and 100 refused packets", mediaWait, func() bool {
		ss := e.sessions(t)
		if len(ss) != 1 || c.sig.pageFailed() != nil {
			return c.sig.pageFailed() != nil
		}
		_, sd, ok := ss[0].legs()
		h := c.peer.heardTrack()
		return ok && sd.Counters.AuthFailures >= 100 && h.longestSecs() >= wantTone.Seconds()
	})
	if err := c.sig.pageFailed(); err != nil {
		t.Fatal(err)
	}
	st, page, _ := c.sig.snapshot()
	d, sd, _ := e.sessions(t)[0].legs()
	t.Logf("page heard %v; browser in %d packets; gateway: dtls leg out %d, sdes leg in %d, auth failures %d",
		&page, st.InPackets, d.Counters.PacketsOut, sd.Counters.PacketsIn, sd.Counters.AuthFailures)
	if page.hits != 0 || d.Counters.PacketsOut != 0 || sd.Counters.PacketsIn != 0 {
		t.Errorf("audio under the wrong key went through: page heard %v, dtls leg out %d, sdes leg in %d",
			&page, d.Counters.PacketsOut, sd.Counters.PacketsIn)
	}
	c.sig.stopPage(10 * time.Second)
	g.delete(t)
}

// gwCall is one call set up through the gateway over ng.
type gwCall struct {
	e        *edge
	id       string
	sip, web sdpMedia   // the SDPs toward the SIP side and toward the browser
	toPeer   sdesKey    // the gateway's SDES key toward ffmpeg
	tap      *loCapture // both legs, nil when the machine cannot capture
}

// setUpCall hands the browser's offer to ng offer and the SDES side's
// answer, announcing answerKey and codec (PCMU or opus) alone, to ng
// answer with the gateway's DTLS role dtls; then it starts the SDES side's receiver, a capture of both legs,
// the SDES side's sender, and gives the browser its answer. It checks
// that each side's SDP has only its own keying.
func setUpCall(t *testing.T, e *edge, c *call, dtls, codec string, answerKey sdesKey) *gwCall {
	t.Helper()
	g := &gwCall{e: e, id: fmt.Sprintf("webrtc-%x", rand.Uint64())}
	r := e.ngCall(t, map[string]any{
		"command": "offer", "call-id": g.id, "from-tag": "browser", "sdp": c.offer,
		"transport-protocol": "RTP/SAVP", "ICE": "remove",
		"rtcp-mux": []any{"demux"}, "SDES": []any{"on"},
	})
	sipSDP, _ := r["sdp"].(string)
	var err error
	if g.sip, err = parseSDP(sipSDP); err != nil {
		t.Fatalf("the offer toward the SIP side: %v\n%s", err, sipSDP)
	}
	t.Logf("offer toward the SIP side: %s %s, %d crypto lines, payload types %v", g.sip.Addr, g.sip.Proto, len(g.sip.Crypto), g.sip.PTs)
	if g.sip.Proto != "RTP/SAVP" {
		t.Errorf("the SIP side's offer is %s, want RTP/SAVP", g.sip.Proto)
	}
	for _, a := range []string{"fingerprint", "setup", "ice-ufrag", "ice-pwd", "candidate", "rtcp-mux"} {
		if g.sip.has(a) {
			t.Errorf("the SIP side's offer has a=%s", a)
		}
	}
	tag, toPeer, err := g.sip.cryptoFor(sdesSuite)
	if err != nil {
		t.Fatalf("the SIP side's offer: %v", err)
	}
	g.toPeer = toPeer
	if codec == "opus" {
		pt, err := g.sip.rtpmapPT("opus/48000/2")
		if err != nil {
			t.Fatalf("the SIP side's offer: %v", err)
		}
		c.peer.Codec = opus(pt)
	}
	c.peer.SetRemote(g.sip.Addr)
	c.peer.Receive(toPeer)

	r = e.ngCall(t, map[string]any{
		"command": "answer", "call-id": g.id, "from-tag": "browser", "to-tag": "sdes",
		"sdp":                sdesAnswer(c.peer.Addr(), tag, answerKey, c.peer.Codec),
		"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "DTLS": dtls,
		"rtcp-mux": []any{"require"},
	})
	webSDP, _ := r["sdp"].(string)
	if g.web, err = parseSDP(webSDP); err != nil {
		t.Fatalf("the answer toward the browser: %v\n%s", err, webSDP)
	}
	t.Logf("answer toward the browser: %s %s, setup %s, fingerprint %s", g.web.Addr, g.web.Proto, g.web.attr("setup"), g.web.attr("fingerprint"))
	if g.web.Proto != "UDP/TLS/RTP/SAVPF" || g.web.attr("setup") != dtls || !g.web.has("fingerprint") ||
		!g.web.has("ice-ufrag") || !g.web.has("candidate") || !g.web.has("rtcp-mux") || len(g.web.Crypto) != 0 {
		t.Errorf("the answer toward the browser is not a DTLS-%s ICE-lite answer without SDES:\n%s", dtls, webSDP)
	}
	for _, k := range []sdesKey{toPeer, answerKey, c.peer.TxKey} {
		if strings.Contains(webSDP, k.inline()) {
			t.Fatal("an SDES key is in the answer toward the browser")
		}
	}
	g.tap = captureLo(t, g.web.Addr.Port(), g.sip.Addr.Port())
	c.peer.Send(sdesHz, 0x5de5)
	c.sig.sendAnswer(webSDP)
	return g
}

// delete ends the call over ng and waits for its session to go.
func (g *gwCall) delete(t *testing.T) {
	t.Helper()
	g.e.ngCall(t, map[string]any{"command": "delete", "call-id": g.id, "from-tag": "browser"})
	testutil.WaitFor(t, "the session to end after delete", 10*time.Second, func() bool { return len(g.e.sessions(t)) == 0 })
}

// sdesLegKeys are an SDES leg's gateway port and its two keys: the
// gateway's toward ffmpeg and ffmpeg's own.
type sdesLegKeys struct {
	port             uint16
	toPeer, fromPeer sdesKey
}

// checkLegKeys tries every SRTP packet captured on the legs against
// every SDES key: on each SDES leg, what the gateway sends opens with the
// key it offered there (toPeer) and with no other, and what ffmpeg sends
// with ffmpeg's (fromPeer) and no other; on the browser leg, keyed by its
// own DTLS handshake, nothing opens with any of them.
func checkLegKeys(t *testing.T, dgs []capture.Datagram, webPort uint16, legs ...sdesLegKeys) {
	t.Helper()
	var all []sdesKey
	var set []srtpcheck.Key
	for _, l := range legs {
		all = append(all, l.toPeer, l.fromPeer)
		set = append(set, checkKey(t, l.toPeer), checkKey(t, l.fromPeer))
	}
	// segments splits a UDP GSO message, which the gateway may send and
	// lo carries (and tcpdump captures) unsegmented, into its datagrams
	// when they all open with an SDES key; else p is one datagram.
	segments := func(p []byte) [][]byte {
		if segs := srtpcheck.SplitGSO(p, set); segs != nil {
			return segs
		}
		return [][]byte{p}
	}
	// onlyWith reports whether p opens with want and with no other key.
	onlyWith := func(p []byte, want sdesKey) bool {
		for _, k := range all {
			if opens(p, k) != (k.inline() == want.inline()) {
				return false
			}
		}
		return true
	}
	var web, stun, dtls, webOpened, sipOut, sipOutOpened, sipIn, sipInOpened, truncated int
	for _, dg := range dgs {
		p := dg.Payload
		if dg.Truncated {
			truncated++
			continue
		}
		if len(p) == 0 {
			continue
		}
		if dg.Src.Port() == webPort || dg.Dst.Port() == webPort {
			switch {
			case p[0] <= 3: // RFC 7983 first-byte demultiplexing
				stun++
			case p[0] >= 20 && p[0] <= 63:
				dtls++
			case capture.LooksLikeRTP(p):
				web++
				opened := srtpcheck.SplitGSO(p, set) != nil
				for _, k := range all {
					opened = opened || opens(p, k)
				}
				if opened {
					webOpened++
				}
			}
			continue
		}
		if !capture.LooksLikeRTP(p) {
			continue
		}
		for _, l := range legs {
			switch {
			case dg.Src.Port() == l.port:
				for _, seg := range segments(p) {
					sipOut++
					if onlyWith(seg, l.toPeer) {
						sipOutOpened++
					} else {
						logPacket(t, "an SDES leg packet out that does not open with its key alone", dg)
					}
				}
			case dg.Dst.Port() == l.port:
				for _, seg := range segments(p) {
					sipIn++
					if onlyWith(seg, l.fromPeer) {
						sipInOpened++
					} else {
						logPacket(t, "an SDES leg packet in that does not open with its key alone", dg)
					}
				}
			}
		}
	}
	t.Logf("capture: browser leg %d STUN, %d DTLS, %d SRTP (%d open with an SDES key); SDES legs out %d (%d open with the gateway's key), in %d (%d with ffmpeg's)",
		stun, dtls, web, webOpened, sipOut, sipOutOpened, sipIn, sipInOpened)
	if web < 50 || dtls == 0 || stun == 0 || sipOut < 50 || sipIn < 50 {
		t.Errorf("too little captured to judge the keys: want 50+ SRTP packets on each leg, and DTLS and STUN on the browser's")
	}
	if truncated != 0 {
		t.Errorf("the capture cut %d datagrams short: their keys were not checked", truncated)
	}
	if webOpened != 0 {
		t.Errorf("%d of %d SRTP datagrams on the browser leg open with an SDES key", webOpened, web)
	}
	if sipOutOpened != sipOut || sipInOpened != sipIn {
		t.Errorf("on the SDES legs %d of %d packets out and %d of %d in open with their key alone", sipOutOpened, sipOut, sipInOpened, sipIn)
	}
}

// checkKey is k as bench's SRTP checker takes it.
func checkKey(t *testing.T, k sdesKey) srtpcheck.Key {
	t.Helper()
	sk, err := srtpcheck.ParseKey(sdesSuite, k.inline())
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// opens reports whether the SRTP packet p authenticates under k, with a
// fresh context (no replay state) and a rollover counter of 0 or 1: the
// browser and ffmpeg start at a random sequence number, which may wrap
// during the call.
func opens(p []byte, k sdesKey) bool {
	var h rtp.Header
	if _, err := h.Unmarshal(p); err != nil {
		return false
	}
	for roc := range uint32(2) {
		c, err := srtp.CreateContext(k.Key, k.Salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
		if err != nil {
			return false
		}
		c.SetROC(h.SSRC, roc)
		if _, err := c.DecryptRTP(nil, p, nil); err == nil {
			return true
		}
	}
	return false
}

// logPacket shows an RTP packet's header; the test's output is bounded
// by the few packets it can be called for.
func logPacket(t *testing.T, what string, dg capture.Datagram) {
	var h rtp.Header
	h.Unmarshal(dg.Payload)
	t.Logf("%s: %v -> %v at %s, %d bytes, pt %d seq %d ts %d ssrc %x", what, dg.Src, dg.Dst,
		dg.Time.Format("15:04:05.000"), len(dg.Payload), h.PayloadType, h.SequenceNumber, h.Timestamp, h.SSRC)
}

// sessionString shows the gateway's sessions in failure messages.
type sessionString struct {
	e *edge
	t *testing.T
}

func (s sessionString) String() string {
	return fmt.Sprintf("gateway sessions: %+v", s.e.sessions(s.t))
}
