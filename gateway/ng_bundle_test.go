package gateway

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestBundleRoute: RTP goes to the m= line that lists its payload type,
// RTCP to the m= line whose stream it is from or about; anything else to
// the transport's own m= line, and nothing to a session that ended.
func TestBundleRoute(t *testing.T) {
	sa, sv := &session{id: "a", added: true}, &session{id: "v", added: true}
	a, v := &sa.legs[0], &sv.legs[0]
	a.s, v.s = sa, sv
	v.via = a
	a.inSSRC.note(1111, 1, 16)  // the browser's audio
	v.inSSRC.note(2222, 1, 16)  // the browser's video
	a.outSSRC.note(3333, 1, 16) // the SIP side's audio, toward the browser
	v.outSSRC.note(4444, 1, 16) // the SIP side's video
	b := newBundle([]*leg{a, v}, [][]uint8{{111, 63, 0}, {96, 97, 102}})
	rtpPT := func(pt uint8) []byte { p := make([]byte, 12); p[0], p[1] = 0x80, pt; return p }
	rtcpOf := func(pk rtcp.Packet) []byte {
		b, err := pk.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		rtcp bool
		want *leg
	}{
		{"opus", rtpPT(111), false, a},
		{"opus with the marker bit", rtpPT(0x80 | 111), false, a},
		{"VP8", rtpPT(96), false, v},
		{"RTX of VP8", rtpPT(97), false, v},
		{"an unknown payload type", rtpPT(50), false, nil},
		{"RR from the video sender", rtcpOf(&rtcp.ReceiverReport{SSRC: 2222}), true, v},
		{"RR from an unknown sender about SIP video", rtcpOf(&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 4444}}}), true, v},
		{"SR about SIP audio", rtcpOf(&rtcp.SenderReport{SSRC: 9, Reports: []rtcp.ReceptionReport{{SSRC: 3333}}}), true, a},
		{"PLI for SIP video", rtcpOf(&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 4444}), true, v},
		{"NACK for SIP video", rtcpOf(&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 4444}), true, v},
		{"RR without reports", rtcpOf(&rtcp.ReceiverReport{SSRC: 1}), true, a},
		{"SDES", rtcpOf(&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 7}}}), true, a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.route(a, tc.pkt, tc.rtcp); got != tc.want {
				t.Errorf("routed to %v, want %v", got, tc.want)
			}
		})
	}
	sv.ended = true
	if got := b.route(a, rtpPT(96), false); got != nil {
		t.Errorf("a packet for an ended session was routed (to %v), not dropped", got)
	}
	if got := b.route(a, rtpPT(111), false); got != a {
		t.Errorf("audio on the transport's own m= line went to %v", got)
	}
}

// BenchmarkBundleRoute: the per-packet cost BUNDLE adds to a transport's
// inbound packets, which must allocate nothing.
func BenchmarkBundleRoute(b *testing.B) {
	sa, sv := &session{id: "a", added: true}, &session{id: "v", added: true}
	a, v := &sa.legs[0], &sv.legs[0]
	a.s, v.s, v.via = sa, sv, a
	a.inSSRC.note(1111, 1, 16)
	v.inSSRC.note(2222, 1, 16)
	v.outSSRC.note(4444, 1, 16)
	bu := newBundle([]*leg{a, v}, [][]uint8{{111, 0}, {96, 97}})
	rtpPkt := make([]byte, 172)
	rtpPkt[0], rtpPkt[1] = 0x80, 96
	pli, _ := (&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 4444}).Marshal()
	for _, bc := range []struct {
		name string
		pkt  []byte
		rtcp bool
	}{{"rtp", rtpPkt, false}, {"rtcp-pli", pli, true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.pkt)))
			for i := 0; i < b.N; i++ {
				if bu.route(a, bc.pkt, bc.rtcp) != v {
					b.Fatal("misrouted")
				}
			}
		})
	}
}

// TestNGWebRTCAnswerRejectsOne: the SIP answer rejects one of the two
// bundled m= lines (port 0). The browser's answer leaves it out of the
// BUNDLE group; the other one keeps a working transport, also when the
// rejected one was the transport's own m= line.
func TestNGWebRTCAnswerRejectsOne(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flags := docWebRTCFlags(t)
	with := func(m, f map[string]any) map[string]any {
		for k, v := range f {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		rejected int // m= line index
	}{{"video rejected", 1}, {"audio rejected", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			web := newWebPeer(t)
			sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
			id := "reject-" + tc.name
			offer := ngDo(t, c, with(map[string]any{"command": "offer", "call-id": id, "from-tag": "web", "sdp": web.chromeOffer(t)}, flags[0]))
			toSIP := sdpOf(t, offer)
			gwA, gwV := gwKey(t, toSIP.Media[0], "AES_CM_128_HMAC_SHA1_80"), gwKey(t, toSIP.Media[1], "AES_CM_128_HMAC_SHA1_80")
			sipA.key.Tag, sipV.key.Tag = gwA.Tag, gwV.Tag
			answer := sipAnswerAV(sipA, sipV, false)
			kept, end, gwk, pt, ssrc := 1, sipV, gwV, uint8(ptVP8), uint32(chromeVideoSSRC)
			if tc.rejected == 1 {
				answer = strings.Replace(answer, fmt.Sprintf("m=video %d ", sipV.addr().Port()), "m=video 0 ", 1)
				kept, end, gwk, pt, ssrc = 0, sipA, gwA, ptOpus, chromeAudioSSRC
			} else {
				answer = strings.Replace(answer, fmt.Sprintf("m=audio %d ", sipA.addr().Port()), "m=audio 0 ", 1)
			}
			ans := ngDo(t, c, with(map[string]any{"command": "answer", "call-id": id, "from-tag": "web", "to-tag": "sip", "sdp": answer}, flags[1]))
			body := ans.Str("sdp")
			if want := fmt.Sprintf("a=group:BUNDLE %d\r\n", kept); !strings.Contains(body, want) {
				t.Errorf("toward the browser, want %q:\n%s", want, body)
			}
			toWeb := sdpOf(t, ans)
			m := toWeb.Media[kept]
			if toWeb.Media[tc.rejected].Port != 0 || m.Port == 0 || m.Fingerprint != g.DTLSFingerprint().String() || m.ICEUfrag == "" {
				t.Fatalf("toward the browser: %+v", toWeb.Media)
			}
			gw := addrOf(m)
			web.nominate(t, gw, m.ICEUfrag, m.ICEPwd)
			web.handshake(t, gw, true, m.Fingerprint)
			waitNGDTLS(t, g, DTLSStateConnected)
			dec, _ := gwk.Context()
			for seq := uint16(1); seq <= 5; seq++ {
				payload := []byte(fmt.Sprintf("%s-%d", tc.name, seq))
				web.sendRTP(t, gw, pt, ssrc, seq, payload)
				if r := sipRecv(t, end, dec); r.SSRC != ssrc || !bytes.Equal(r.Payload, payload) {
					t.Fatalf("packet %d: ssrc %d %q", seq, r.SSRC, r.Payload)
				}
			}
			ngDo(t, c, map[string]any{"command": "delete", "call-id": id})
			testutil.WaitFor(t, "the call's sessions to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
		})
	}
}

// TestNGWebRTCBundleOnly: an offer whose video line is a=bundle-only
// (port 0, no transport attributes of its own, RFC 8843 section 6) is
// bundled on the audio line's transport, and toward SIP it is an
// ordinary m= line with its own port.
func TestNGWebRTCBundleOnly(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	web := newWebPeer(t)
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	flags := docWebRTCFlags(t)
	with := func(m, f map[string]any) map[string]any {
		for k, v := range f {
			m[k] = v
		}
		return m
	}
	offerSDP := web.chromeOffer(t)
	head, video, _ := strings.Cut(offerSDP, "m=video ")
	video = regexp.MustCompile(`^\d+ `).ReplaceAllString(video, "0 ")
	video = regexp.MustCompile(`(?m)^a=(fingerprint|setup|ice-ufrag|ice-pwd|ice-options|rtcp-mux|rtcp):.*\r\n`).ReplaceAllString(video, "")
	video = strings.Replace(video, "a=mid:1\r\n", "a=mid:1\r\na=bundle-only\r\n", 1)
	offerSDP = head + "m=video " + video
	const id = "bundle-only@test"
	offer := ngDo(t, c, with(map[string]any{"command": "offer", "call-id": id, "from-tag": "web", "sdp": offerSDP}, flags[0]))
	toSIP := checkTowardSIP(t, offer.Str("sdp"))
	if strings.Contains(offer.Str("sdp"), "bundle-only") {
		t.Errorf("a=bundle-only went toward SIP:\n%s", offer.Str("sdp"))
	}
	gwA, gwV := gwKey(t, toSIP.Media[0], "AES_CM_128_HMAC_SHA1_80"), gwKey(t, toSIP.Media[1], "AES_CM_128_HMAC_SHA1_80")
	sipA.key.Tag, sipV.key.Tag = gwA.Tag, gwV.Tag
	ans := ngDo(t, c, with(map[string]any{"command": "answer", "call-id": id, "from-tag": "web", "to-tag": "sip",
		"sdp": sipAnswerAV(sipA, sipV, false)}, flags[1]))
	toWeb := checkTowardBrowser(t, g, ans.Str("sdp"), web, "passive")
	gw := addrOf(toWeb.Media[0])
	web.nominate(t, gw, toWeb.Media[0].ICEUfrag, toWeb.Media[0].ICEPwd)
	web.handshake(t, gw, true, toWeb.Media[0].Fingerprint)
	waitNGDTLS(t, g, DTLSStateConnected)
	decA, _ := gwA.Context()
	decV, _ := gwV.Context()
	flowAV(t, web, gw, sipA, sipV, addrOf(toSIP.Media[0]), addrOf(toSIP.Media[1]), decA, decV, 1, 3)
}
