package gateway

import (
	"strings"
	"testing"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// TestNGWebRTCTLSID: with a=tls-id (RFC 8842) the browser says when it
// wants a new DTLS association: an ICE restart under the same tls-id
// gets new ICE credentials and keeps the association and its keys; a
// new tls-id starts a new handshake.
func TestNGWebRTCTLSID(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	web := newWebPeer(t)
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	doc := docWebRTCFlags(t)
	const id = "tls-id@test"
	msg := func(cmd, from, to, sdp string, flags map[string]any) map[string]any {
		m := map[string]any{"command": cmd, "call-id": id, "from-tag": from, "to-tag": to, "sdp": sdp}
		for k, v := range flags {
			m[k] = v
		}
		return m
	}
	withTLSID := func(sdp, tlsID string) string {
		return strings.ReplaceAll(sdp, "a=setup:", "a=tls-id:"+tlsID+"\r\na=setup:")
	}
	sipOffer := sipAnswerAV(sipA, sipV, false)
	offer := ngDo(t, c, msg("offer", "sip", "", sipOffer, doc[2]))
	toWeb := checkTowardBrowser(t, g, offer.Str("sdp"), web, "actpass")
	ans := ngDo(t, c, msg("answer", "sip", "web", withTLSID(web.browserAnswer("active"), "abc1"), doc[3]))
	toSIP := checkTowardSIP(t, ans.Str("sdp"))
	gwA, gwV := keyOf(t, toSIP.Media[0]), keyOf(t, toSIP.Media[1])
	decA, _ := gwA.Context()
	decV, _ := gwV.Context()
	toA, toV := addrOf(toSIP.Media[0]), addrOf(toSIP.Media[1])
	gw := addrOf(toWeb.Media[0])
	web.nominate(t, gw, toWeb.Media[0].ICEUfrag, toWeb.Media[0].ICEPwd)
	web.handshake(t, gw, true, toWeb.Media[0].Fingerprint)
	waitHandshakes(t, g, 1)
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 1, 3)
	transport := func() *DTLSInfo {
		for _, s := range mustSessions(t, g) {
			if s.NG.Media == 1 {
				return legOf(s, "cloud").DTLS
			}
		}
		t.Fatal("no session for m= line 1")
		return nil
	}
	reinvite := func(sdp string) ng.Media {
		t.Helper()
		ngDo(t, c, msg("offer", "web", "sip", sdp, doc[3]))
		back := ngDo(t, c, msg("answer", "web", "sip", sipOffer, doc[2]))
		return checkTowardBrowser(t, g, back.Str("sdp"), web, "passive").Media[0]
	}

	// ICE restart, same tls-id: new ICE credentials, the same association.
	web.ufrag, web.pwd = "r3st", "restartrestartrestart0123"
	m := reinvite(withTLSID(web.browserAnswer("actpass"), "abc1"))
	if m.ICEUfrag == toWeb.Media[0].ICEUfrag {
		t.Error("ICE restart: the gateway kept its ICE credentials")
	}
	if d := transport(); d == nil || d.State != DTLSStateConnected || d.Handshakes != 1 {
		t.Errorf("ICE restart under the same tls-id touched the DTLS association: %+v", d)
	}
	web.checkRefused(t, gw, toWeb.Media[0].ICEUfrag, toWeb.Media[0].ICEPwd)
	web.nominate(t, gw, m.ICEUfrag, m.ICEPwd)
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 4, 3) // the same DTLS keys

	// A new tls-id: a new association.
	reinvite(withTLSID(web.browserAnswer("actpass"), "abc2"))
	if d := transport(); d == nil || d.State == DTLSStateConnected {
		t.Errorf("a new tls-id did not start a new DTLS association: %+v", d)
	}
	web.handshake(t, gw, true, m.Fingerprint)
	waitHandshakes(t, g, 2)
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 7, 3)
}

// TestNGWebRTCGatewayActive: with DTLS=active on the answer the gateway
// takes the client role toward the browser's actpass: its answer says
// a=setup:active, it sends the ClientHello once the browser's
// nomination gave it an address, and media flows.
func TestNGWebRTCGatewayActive(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	web := newWebPeer(t)
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	flags := docWebRTCFlags(t)
	const id = "active@test"
	m := map[string]any{"command": "offer", "call-id": id, "from-tag": "web", "sdp": web.chromeOffer(t)}
	for k, v := range flags[0] {
		m[k] = v
	}
	toSIP := checkTowardSIP(t, ngDo(t, c, m).Str("sdp"))
	gwA, gwV := gwKey(t, toSIP.Media[0], "AES_CM_128_HMAC_SHA1_80"), gwKey(t, toSIP.Media[1], "AES_CM_128_HMAC_SHA1_80")
	sipA.key.Tag, sipV.key.Tag = gwA.Tag, gwV.Tag
	m = map[string]any{"command": "answer", "call-id": id, "from-tag": "web", "to-tag": "sip", "sdp": sipAnswerAV(sipA, sipV, false)}
	for k, v := range flags[1] {
		m[k] = v
	}
	m["DTLS"] = "active"
	toWeb := checkTowardBrowser(t, g, ngDo(t, c, m).Str("sdp"), web, "active")
	gw := addrOf(toWeb.Media[0])
	web.nominate(t, gw, toWeb.Media[0].ICEUfrag, toWeb.Media[0].ICEPwd)
	web.handshake(t, gw, false, toWeb.Media[0].Fingerprint) // the browser is the DTLS server
	waitNGDTLS(t, g, DTLSStateConnected)
	decA, _ := gwA.Context()
	decV, _ := gwV.Context()
	flowAV(t, web, gw, sipA, sipV, addrOf(toSIP.Media[0]), addrOf(toSIP.Media[1]), decA, decV, 1, 3)
}
