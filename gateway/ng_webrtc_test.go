package gateway

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/gateway/ng"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// SSRCs and payload types of the Chromium offer in ng/testdata.
const (
	chromeAudioSSRC = 770103454
	chromeVideoSSRC = 1098591391
	ptOpus          = 111
	ptVP8           = 96
)

// sipAnswerAV is a SIP endpoint pair's answer (or offer) with an audio
// and a video line, SDES on each with the endpoint's own key.
func sipAnswerAV(a, v *ngEnd, mids bool) string {
	lines := []string{"v=0", "o=- 8 8 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
		fmt.Sprintf("m=audio %d RTP/SAVP 111 0", a.addr().Port()), "a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000"}
	if mids {
		lines = append(lines, "a=mid:0")
	}
	lines = append(lines, a.key.CryptoLine(), fmt.Sprintf("m=video %d RTP/SAVP 96", v.addr().Port()), "a=rtpmap:96 VP8/90000")
	if mids {
		lines = append(lines, "a=mid:1")
	}
	lines = append(lines, v.key.CryptoLine())
	return strings.Join(lines, "\r\n") + "\r\n"
}

// gwKey picks the gateway's a=crypto line of suite in m.
func gwKey(t *testing.T, m ng.Media, suite string) ngKey {
	t.Helper()
	for _, line := range m.Crypto {
		if k, err := parseNGKey(line); err == nil && k.Suite.Name == suite {
			return k
		}
	}
	t.Fatalf("no %s line in %v", suite, m.Crypto)
	return ngKey{}
}

// checkTowardBrowser checks the SDP the gateway sends toward a browser:
// its own fingerprint and setup, ICE-lite, one transport for both m=
// lines under BUNDLE, rtcp-mux, DTLS transport, no a=crypto.
func checkTowardBrowser(t *testing.T, g *Gateway, body string, web *webPeer, setup string) *ng.SDP {
	t.Helper()
	s, err := ng.ParseSDP([]byte(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	gwFP := g.DTLSFingerprint().String()
	if n := strings.Count(body, "a=group:BUNDLE 0 1\r\n"); n != 1 {
		t.Errorf("%d a=group:BUNDLE 0 1 toward the browser:\n%s", n, body)
	}
	for _, bad := range []string{"a=crypto", web.fp[8:], "a=rtcp:"} {
		if strings.Contains(body, bad) {
			t.Errorf("toward the browser the SDP has %q:\n%s", bad, body)
		}
	}
	if !strings.Contains(body, "a=ice-lite\r\n") {
		t.Errorf("no a=ice-lite toward the browser:\n%s", body)
	}
	if len(s.Media) != 2 {
		t.Fatalf("%d m= lines", len(s.Media))
	}
	a, v := s.Media[0], s.Media[1]
	for i, m := range s.Media {
		if m.Proto != ng.ProtoTLSSAVPF || m.Fingerprint != gwFP || m.Setup != setup || !m.Mux || !m.Bundled ||
			m.ICEUfrag == "" || len(m.ICEPwd) < 22 || m.Mid != fmt.Sprint(i) || m.Addr != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("toward the browser, m= line %d: %+v", i+1, m)
		}
	}
	if a.Port != v.Port || a.ICEUfrag != v.ICEUfrag || a.ICEPwd != v.ICEPwd {
		t.Errorf("the bundled m= lines differ: audio %d %s, video %d %s", a.Port, a.ICEUfrag, v.Port, v.ICEUfrag)
	}
	if n := strings.Count(body, fmt.Sprintf("a=candidate:1 1 UDP 2130706431 127.0.0.1 %d typ host\r\n", a.Port)); n != 2 {
		t.Errorf("%d host candidates on the transport's port, want one per m= line:\n%s", n, body)
	}
	return s
}

// checkTowardSIP checks the SDP the gateway sends toward SIP: two
// ordinary m= lines with their own ports and keys, no DTLS, ICE or
// BUNDLE.
func checkTowardSIP(t *testing.T, body string) *ng.SDP {
	t.Helper()
	s, err := ng.ParseSDP([]byte(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	for _, bad := range []string{"a=group:BUNDLE", "a=fingerprint", "a=setup", "a=ice-", "a=candidate", "UDP/TLS", "a=tls-id"} {
		if strings.Contains(body, bad) {
			t.Errorf("toward SIP the SDP has %q:\n%s", bad, body)
		}
	}
	if len(s.Media) != 2 || s.Media[0].Port == s.Media[1].Port || s.Media[0].Port == 0 {
		t.Fatalf("toward SIP: %+v", s.Media)
	}
	for i, m := range s.Media {
		if m.Proto != ng.ProtoSAVP || len(m.Crypto) == 0 || m.DTLS {
			t.Errorf("toward SIP, m= line %d: %+v", i+1, m)
		}
	}
	return s
}

// flowAV sends n packets each way through a call between a browser-side
// peer (one bundled transport at gw) and two SIP endpoints (audio at
// sipA, video at sipV, reached at toA and toV; the gateway's keys toward
// them decA and decV) and checks that each packet arrives, byte for
// byte, at the m= line it belongs to.
func flowAV(t *testing.T, web *webPeer, gw netip.AddrPort, sipA, sipV *ngEnd, toA, toV netip.AddrPort, decA, decV *srtp.Context, seq uint16, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		s := seq + uint16(i)
		pa, pv := []byte(fmt.Sprintf("opus-frame-%d", s)), []byte(fmt.Sprintf("vp8-frame-%d-%s", s, strings.Repeat("v", 300)))
		web.sendRTP(t, gw, ptOpus, chromeAudioSSRC, s, pa)
		if r := sipRecv(t, sipA, decA); r.SSRC != chromeAudioSSRC || r.PayloadType != ptOpus || !bytes.Equal(r.Payload, pa) {
			t.Fatalf("audio %d at the SIP audio port: ssrc %d pt %d %q", s, r.SSRC, r.PayloadType, r.Payload)
		}
		web.sendRTP(t, gw, ptVP8, chromeVideoSSRC, s, pv)
		if r := sipRecv(t, sipV, decV); r.SSRC != chromeVideoSSRC || r.PayloadType != ptVP8 || !bytes.Equal(r.Payload, pv) {
			t.Fatalf("video %d at the SIP video port: ssrc %d pt %d %q", s, r.SSRC, r.PayloadType, r.Payload)
		}
		sipRTP(t, sipA, toA, ptOpus, 0xa0d10, s, pa)
		if r := web.recvRTP(t); r.SSRC != 0xa0d10 || !bytes.Equal(r.Payload, pa) {
			t.Fatalf("audio %d at the browser: ssrc %x %q", s, r.SSRC, r.Payload)
		}
		sipRTP(t, sipV, toV, ptVP8, 0x71de0, s, pv)
		if r := web.recvRTP(t); r.SSRC != 0x71de0 || !bytes.Equal(r.Payload, pv) {
			t.Fatalf("video %d at the browser: ssrc %x %q", s, r.SSRC, r.Payload)
		}
	}
}

// distinctKeys fails when two of the named master keys are equal.
func distinctKeys(t *testing.T, keys map[string][]byte) {
	t.Helper()
	for a, ka := range keys {
		for b, kb := range keys {
			if a < b && bytes.Equal(ka, kb) {
				t.Errorf("the %s and the %s are the same key", a, b)
			}
		}
	}
}

// waitNGDTLS waits until every DTLS leg of every session is in state.
func waitNGDTLS(t *testing.T, g *Gateway, state string) {
	t.Helper()
	testutil.WaitFor(t, "the DTLS legs to be "+state, 5*time.Second, func() bool {
		for _, s := range mustSessions(t, g) {
			for _, l := range []LegInfo{s.Internal, s.Cloud} {
				if l.DTLS != nil && l.DTLS.State != state {
					return false
				}
			}
		}
		return true
	})
}

// legOf returns the LegInfo of the side whose leg is id.
func legOf(info SessionInfo, id string) LegInfo {
	if id == "internal" {
		return info.Internal
	}
	return info.Cloud
}

// TestNGWebRTCOfferToSIP: a Chromium offer (audio + video, BUNDLE,
// rtcp-mux, DTLS, ICE) goes to a SIP endpoint pair with SDES; the SIP
// answer comes back. The browser side gets one DTLS transport with the
// gateway's certificate and ICE-lite, the SIP side two plain SDES m=
// lines. A pion/dtls client nominates the candidate, completes the
// handshake on the port the SDP gave, and media flows both ways,
// byte-identical, audio and video each on their own m= line.
func TestNGWebRTCOfferToSIP(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	web := newWebPeer(t)
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	const id = "webrtc-to-sip@test"
	flags := docWebRTCFlags(t)
	msg := func(m, flags map[string]any) map[string]any {
		for k, v := range flags {
			m[k] = v
		}
		return m
	}
	offer := ngDo(t, c, msg(map[string]any{"command": "offer", "call-id": id, "from-tag": "web", "sdp": web.chromeOffer(t)}, flags[0]))
	toSIP := checkTowardSIP(t, offer.Str("sdp"))
	if !strings.Contains(offer.Str("sdp"), "a=mid:0\r\n") || !strings.Contains(offer.Str("sdp"), "a=ssrc:770103454 cname:") {
		t.Errorf("a=mid or a=ssrc did not pass through toward SIP:\n%s", offer.Str("sdp"))
	}
	gwA, gwV := gwKey(t, toSIP.Media[0], "AES_CM_128_HMAC_SHA1_80"), gwKey(t, toSIP.Media[1], "AES_CM_128_HMAC_SHA1_80")
	sipA.key.Tag, sipV.key.Tag = gwA.Tag, gwV.Tag
	ans := ngDo(t, c, msg(map[string]any{"command": "answer", "call-id": id, "from-tag": "web", "to-tag": "sip",
		"sdp": sipAnswerAV(sipA, sipV, false)}, flags[1]))
	toWeb := checkTowardBrowser(t, g, ans.Str("sdp"), web, "passive")
	if !strings.Contains(ans.Str("sdp"), "a=rtpmap:111 opus/48000/2\r\n") {
		t.Errorf("codecs did not pass through toward the browser:\n%s", ans.Str("sdp"))
	}
	gw := addrOf(toWeb.Media[0])
	web.nominate(t, gw, toWeb.Media[0].ICEUfrag, toWeb.Media[0].ICEPwd)
	web.handshake(t, gw, true, toWeb.Media[0].Fingerprint)
	waitNGDTLS(t, g, DTLSStateConnected)

	decA, err := gwA.Context()
	if err != nil {
		t.Fatal(err)
	}
	decV, err := gwV.Context()
	if err != nil {
		t.Fatal(err)
	}
	flowAV(t, web, gw, sipA, sipV, addrOf(toSIP.Media[0]), addrOf(toSIP.Media[1]), decA, decV, 1, 10)
	distinctKeys(t, map[string][]byte{"SIP audio endpoint's key": sipA.key.Master, "SIP video endpoint's key": sipV.key.Master,
		"gateway's audio key toward SIP": gwA.Master, "gateway's video key toward SIP": gwV.Master,
		"browser's DTLS key": web.encKey, "gateway's DTLS key toward the browser": web.decKey})

	// query and the session listing show each leg's keying.
	q := ngDo(t, c, map[string]any{"command": "query", "call-id": id})
	tags := q["tags"].(map[string]any)
	for tag, want := range map[string]string{"web": "dtls", "sip": "sdes"} {
		medias := tags[tag].(map[string]any)["medias"].([]any)
		for i, m := range medias {
			s := m.(map[string]any)["streams"].([]any)[0].(map[string]any)
			if s["keying"] != want {
				t.Errorf("query: tag %s m= line %d keying %v, want %s", tag, i+1, s["keying"], want)
			}
			if want == "dtls" {
				d, _ := s["dtls"].(map[string]any)
				if d == nil || d["state"] != DTLSStateConnected || d["role"] != "passive" || d["profile"] == "" {
					t.Errorf("query: tag %s m= line %d dtls %v", tag, i+1, d)
				}
			}
		}
	}
	// A payload type no m= line lists belongs to neither: dropped and
	// counted (RFC 8843 section 9.2), not sent to the first m= line.
	unknown := func() (n uint64) {
		for _, w := range g.workers {
			for id := range w.stats.drops {
				n += w.stats.drops[id][reasonUnknownFlow].Load()
			}
		}
		return n
	}
	before := unknown()
	web.sendRTP(t, gw, 50, 0xdead, 1, []byte("no m= line has PT 50"))
	testutil.WaitFor(t, "the stray payload type to be counted", 5*time.Second, func() bool { return unknown() == before+1 })
	for _, e := range []*ngEnd{sipA, sipV} {
		_ = e.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := e.conn.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
			t.Errorf("a packet of an unlisted payload type reached %s", e.addr())
		}
	}

	// The SIP side re-INVITEs with the same keys: toward the browser the
	// same transport, fingerprint and ICE credentials, a=setup:actpass;
	// the browser's answer keeps its role, so the association and the
	// keys stay.
	re := ngDo(t, c, msg(map[string]any{"command": "offer", "call-id": id, "from-tag": "sip", "to-tag": "web",
		"sdp": sipAnswerAV(sipA, sipV, false)}, flags[1]))
	w := checkTowardBrowser(t, g, re.Str("sdp"), web, "actpass")
	if addrOf(w.Media[0]) != gw || w.Media[0].ICEUfrag != toWeb.Media[0].ICEUfrag {
		t.Errorf("the SIP re-INVITE moved the browser's transport: %+v", w.Media[0])
	}
	back := ngDo(t, c, msg(map[string]any{"command": "answer", "call-id": id, "from-tag": "sip", "to-tag": "web",
		"sdp": web.browserAnswer("active")}, flags[0]))
	s2 := checkTowardSIP(t, back.Str("sdp"))
	if k := keyOf(t, s2.Media[0]); !bytes.Equal(k.Master, gwA.Master) {
		t.Error("the gateway's audio key toward SIP changed on the SIP side's re-INVITE")
	}
	waitHandshakes(t, g, 1)
	flowAV(t, web, gw, sipA, sipV, addrOf(toSIP.Media[0]), addrOf(toSIP.Media[1]), decA, decV, 11, 3)

	l := ngDo(t, c, map[string]any{"command": "list"})
	if k, _ := l["keying"].(map[string]any)[id].(map[string]any); k == nil || k["web"] != "dtls" || k["sip"] != "sdes" {
		t.Errorf("list: keying %v", l["keying"])
	}
	ss := mustSessions(t, g)
	if len(ss) != 2 {
		t.Fatalf("%d sessions, want one per m= line", len(ss))
	}
	for _, s := range ss {
		web := legOf(s, s.NG.OffererLeg)
		sipLeg := "cloud"
		if s.NG.OffererLeg == "cloud" {
			sipLeg = "internal"
		}
		if web.Keying != KeyingDTLS || web.DTLS == nil || web.DTLS.State != DTLSStateConnected || web.DTLS.Setup != DTLSPassive {
			t.Errorf("session %s (m= line %d): browser leg %+v", s.ID, s.NG.Media, web)
		}
		if web.Local != gw.String() {
			t.Errorf("session %s: browser leg on %s, the transport is %s", s.ID, web.Local, gw)
		}
		if l := legOf(s, sipLeg); l.Keying != KeyingSDES {
			t.Errorf("session %s: SIP leg keying %q", s.ID, l.Keying)
		}
		if s.NG.Media == 2 && s.NG.BundledWith[s.NG.OffererLeg] == "" {
			t.Errorf("the video session is not bundled: %+v", s.NG)
		}
	}
	ngDo(t, c, map[string]any{"command": "delete", "call-id": id})
	testutil.WaitFor(t, "the call's sessions to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
}

// browserAnswer is a browser's answer to a bundled audio + video offer:
// its certificate, a=setup, ICE credentials and mids 0 and 1.
func (p *webPeer) browserAnswer(setup string) string {
	a := p.addr()
	lines := []string{"v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
		"a=msid-semantic: WMS stream"}
	for i, m := range []string{"audio %d UDP/TLS/RTP/SAVPF 111 0", "video %d UDP/TLS/RTP/SAVPF 96"} {
		lines = append(lines, "m="+fmt.Sprintf(m, a.Port()), "c=IN IP4 "+a.Addr().String(), "a=rtcp:9 IN IP4 0.0.0.0",
			"a=ice-ufrag:"+p.ufrag, "a=ice-pwd:"+p.pwd, "a=ice-options:trickle", "a=fingerprint:"+p.fp, "a=setup:"+setup,
			fmt.Sprintf("a=mid:%d", i), "a=sendrecv", "a=rtcp-mux")
		if i == 0 {
			lines = append(lines, "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc", "a=rtpmap:0 PCMU/8000",
				fmt.Sprintf("a=ssrc:%d cname:web", chromeAudioSSRC))
		} else {
			lines = append(lines, "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack pli", fmt.Sprintf("a=ssrc:%d cname:web", chromeVideoSSRC))
		}
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

// waitHandshakes waits until the DTLS legs have completed n handshakes.
func waitHandshakes(t *testing.T, g *Gateway, n uint32) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("handshake %d on the DTLS legs", n), 5*time.Second, func() bool {
		for _, s := range mustSessions(t, g) {
			for _, l := range []LegInfo{s.Internal, s.Cloud} {
				if l.DTLS != nil && (l.DTLS.Handshakes < n || l.DTLS.State != DTLSStateConnected) {
					return false
				}
			}
		}
		return true
	})
}

// TestNGSIPOfferToWebRTC: a SIP endpoint pair offers audio + video with
// SDES toward a browser. The browser is offered one DTLS transport
// (BUNDLE, mids the gateway adds, a=setup:actpass, ICE-lite) and
// answers a=setup:active, so the gateway is passive. Media flows both
// ways. Then the browser re-offers with a new certificate, then with an
// ICE restart: each is a new handshake on the browser's side (and for
// the ICE restart new ICE credentials of the gateway's), while the
// gateway's SDES keys toward SIP stay as they were.
func TestNGSIPOfferToWebRTC(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	web := newWebPeer(t)
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_32")
	const id = "sip-to-webrtc@test"
	// The example's flags in docs/ng.md: the offer toward the browser,
	// the answer toward SIP (and the same for the browser's re-INVITEs).
	doc := docWebRTCFlags(t)
	toWebFlags, toSIPFlags := doc[2], doc[3]
	msg := func(cmd, from, to, sdp string, flags map[string]any) map[string]any {
		m := map[string]any{"command": cmd, "call-id": id, "from-tag": from, "sdp": sdp}
		if to != "" {
			m["to-tag"] = to
		}
		for k, v := range flags {
			m[k] = v
		}
		return m
	}
	sipOffer := sipAnswerAV(sipA, sipV, false)
	offer := ngDo(t, c, msg("offer", "sip", "", sipOffer, toWebFlags))
	toWeb := checkTowardBrowser(t, g, offer.Str("sdp"), web, "actpass")
	ans := ngDo(t, c, msg("answer", "sip", "web", web.browserAnswer("active"), toSIPFlags))
	toSIP := checkTowardSIP(t, ans.Str("sdp"))
	gwA, gwV := keyOf(t, toSIP.Media[0]), keyOf(t, toSIP.Media[1])
	if gwA.Suite.Name != "AES_CM_128_HMAC_SHA1_80" || gwV.Suite.Name != "AES_CM_128_HMAC_SHA1_32" {
		t.Errorf("the gateway answers SIP with %s and %s", gwA.Suite.Name, gwV.Suite.Name)
	}
	gw := addrOf(toWeb.Media[0])
	web.nominate(t, gw, toWeb.Media[0].ICEUfrag, toWeb.Media[0].ICEPwd)
	web.handshake(t, gw, true, toWeb.Media[0].Fingerprint)
	waitHandshakes(t, g, 1)
	decA, _ := gwA.Context()
	decV, _ := gwV.Context()
	toA, toV := addrOf(toSIP.Media[0]), addrOf(toSIP.Media[1])
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 1, 5)
	first := [2][]byte{web.encKey, web.decKey}
	distinctKeys(t, map[string][]byte{"SIP audio endpoint's key": sipA.key.Master, "SIP video endpoint's key": sipV.key.Master,
		"gateway's audio key toward SIP": gwA.Master, "gateway's video key toward SIP": gwV.Master,
		"browser's DTLS key": web.encKey, "gateway's DTLS key toward the browser": web.decKey})

	// A re-offer from the browser with a new certificate.
	reinvite := func(step string, seq uint16) ng.Media {
		t.Helper()
		re := ngDo(t, c, msg("offer", "web", "sip", web.browserAnswer("actpass"), toSIPFlags))
		s := checkTowardSIP(t, re.Str("sdp"))
		if k := keyOf(t, s.Media[0]); !bytes.Equal(k.Master, gwA.Master) {
			t.Errorf("%s: the gateway's audio key toward SIP changed", step)
		}
		if k := keyOf(t, s.Media[1]); !bytes.Equal(k.Master, gwV.Master) {
			t.Errorf("%s: the gateway's video key toward SIP changed", step)
		}
		if addrOf(s.Media[0]) != toA || addrOf(s.Media[1]) != toV {
			t.Errorf("%s: the SIP side's ports moved", step)
		}
		back := ngDo(t, c, msg("answer", "web", "sip", sipOffer, toWebFlags))
		w := checkTowardBrowser(t, g, back.Str("sdp"), web, "passive")
		if addrOf(w.Media[0]) != gw {
			t.Errorf("%s: the browser's transport moved to %s from %s", step, addrOf(w.Media[0]), gw)
		}
		return w.Media[0]
	}
	web.newCert(t)
	m := reinvite("new fingerprint", 6)
	if m.ICEUfrag != toWeb.Media[0].ICEUfrag {
		t.Errorf("new fingerprint: the gateway's ICE credentials changed without an ICE restart")
	}
	web.handshake(t, gw, true, m.Fingerprint)
	waitHandshakes(t, g, 2)
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 6, 5)

	// An ICE restart: new credentials on both sides, a new handshake.
	web.ufrag, web.pwd = "r3st", "restartrestartrestart0123"
	m = reinvite("ICE restart", 11)
	if m.ICEUfrag == toWeb.Media[0].ICEUfrag || m.ICEPwd == toWeb.Media[0].ICEPwd {
		t.Errorf("ICE restart: the gateway kept its ICE credentials")
	}
	web.checkRefused(t, gw, toWeb.Media[0].ICEUfrag, toWeb.Media[0].ICEPwd)
	web.nominate(t, gw, m.ICEUfrag, m.ICEPwd)
	web.handshake(t, gw, true, m.Fingerprint)
	waitHandshakes(t, g, 3)
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 11, 5)
	if bytes.Equal(web.encKey, first[0]) || bytes.Equal(web.decKey, first[1]) {
		t.Error("a new handshake exported the same keys")
	}
	ngDo(t, c, map[string]any{"command": "delete", "call-id": id})
	testutil.WaitFor(t, "the call's sessions to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
}
