package gateway

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestNGWebRTCRefused: DTLS-SRTP requests mediaedge cannot honour get an
// error naming the problem, and leave no call and no session behind.
func TestNGWebRTCRefused(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	web := newWebPeer(t)
	chrome := web.chromeOffer(t)
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	toWeb := map[string]any{"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "SDES": []any{"off"}}
	call := func(cmd, id, sdp string, flags map[string]any) error {
		m := map[string]any{"command": cmd, "call-id": id, "from-tag": "a", "sdp": sdp}
		if cmd == "answer" {
			m["to-tag"] = "b"
		}
		for k, v := range flags {
			m[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Call(ctx, m)
		return err
	}
	for _, tc := range []struct {
		name, sdp string
		flags     map[string]any
		want      string
	}{
		{"DTLS without rtcp-mux", strings.ReplaceAll(chrome, "a=rtcp-mux\r\n", ""), nil, "rtcp-mux"},
		{"DTLS without a fingerprint", strings.ReplaceAll(chrome, "a=fingerprint:"+web.fp+"\r\n", ""), nil, "a=fingerprint"},
		{"a=setup:holdconn", strings.ReplaceAll(chrome, "a=setup:actpass", "a=setup:holdconn"), nil, "holdconn"},
		{"a malformed fingerprint", strings.ReplaceAll(chrome, web.fp, "sha-256 00:11"), nil, "fingerprint"},
		{"DTLS off toward a UDP/TLS transport", chrome, map[string]any{"DTLS": "off", "transport-protocol": "UDP/TLS/RTP/SAVPF"}, "contradicts"},
		{"an unknown DTLS mode", chrome, map[string]any{"DTLS": "actpass"}, "DTLS"},
		{"a fingerprint hash mediaedge does not write", chrome, map[string]any{"DTLS-fingerprint": "sha-1"}, "DTLS-fingerprint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := call("offer", "bad-"+tc.name, tc.sdp, tc.flags)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	// Answers a DTLS offer cannot take: each ends its call.
	sip := sipAnswerAV(sipA, sipV, false)
	for _, tc := range []struct{ name, answer, want string }{
		{"no fingerprint in the browser's answer", strings.ReplaceAll(web.browserAnswer("active"), "a=fingerprint:"+web.fp+"\r\n", ""), "a=fingerprint"},
		{"the browser's answer drops BUNDLE", strings.ReplaceAll(web.browserAnswer("active"), "a=group:BUNDLE 0 1\r\n", ""), "BUNDLE"},
		{"SDES where DTLS was offered", strings.Replace(sipAnswerAV(sipA, sipV, true), "t=0 0\r\n", "t=0 0\r\na=group:BUNDLE 0 1\r\n", 1), "a=fingerprint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "bad-answer-" + tc.name
			if err := call("offer", id, sip, toWeb); err != nil {
				t.Fatal(err)
			}
			err := call("answer", id, tc.answer, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	if n := g.ng.numCalls(); n != 0 {
		t.Errorf("%d calls after refused requests", n)
	}
	if n := len(mustSessions(t, g)); n != 0 {
		t.Errorf("%d sessions after refused requests", n)
	}
}

// TestNGWebRTCWrongCertificate: a browser that presents another
// certificate than the one its SDP's fingerprint names does not get
// through the handshake; the leg's state says failed, in query too, and
// the SIP side's leg is untouched.
func TestNGWebRTCWrongCertificate(t *testing.T) {
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
	const id = "wrong-cert@test"
	offer := ngDo(t, c, with(map[string]any{"command": "offer", "call-id": id, "from-tag": "web", "sdp": web.chromeOffer(t)}, flags[0]))
	toSIP := sdpOf(t, offer)
	sipA.key.Tag, sipV.key.Tag = gwKey(t, toSIP.Media[0], "AES_CM_128_HMAC_SHA1_80").Tag, gwKey(t, toSIP.Media[1], "AES_CM_128_HMAC_SHA1_80").Tag
	ans := ngDo(t, c, with(map[string]any{"command": "answer", "call-id": id, "from-tag": "web", "to-tag": "sip",
		"sdp": sipAnswerAV(sipA, sipV, false)}, flags[1]))
	toWeb := sdpOf(t, ans).Media[0]
	gw := addrOf(toWeb)
	web.nominate(t, gw, toWeb.ICEUfrag, toWeb.ICEPwd)
	web.newCert(t) // not the one the offer announced
	if err := web.tryHandshake(t, gw, true, toWeb.Fingerprint); err == nil {
		t.Fatal("the handshake with a certificate the SDP did not announce completed")
	}
	waitNGDTLS(t, g, DTLSStateFailed)
	q := ngDo(t, c, map[string]any{"command": "query", "call-id": id})
	s := q["tags"].(map[string]any)["web"].(map[string]any)["medias"].([]any)[0].(map[string]any)["streams"].([]any)[0].(map[string]any)
	if d, _ := s["dtls"].(map[string]any); d == nil || d["state"] != DTLSStateFailed {
		t.Errorf("query: the browser's stream %v", s)
	}
	for _, ss := range mustSessions(t, g) {
		sipLeg := legOf(ss, "cloud")
		if ss.NG.OffererLeg == "cloud" {
			sipLeg = legOf(ss, "internal")
		}
		if sipLeg.Keying != KeyingSDES || sipLeg.Suite != "AES_CM_128_HMAC_SHA1_80" {
			t.Errorf("the SIP leg changed: %+v", sipLeg)
		}
	}
}
