package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNGDTLSCertificateReloadBeforeAnswer: a SIP offer toward a browser
// announces the gateway's certificate A; a reload then loads certificate
// B from files before the browser answers. The call's handshake still
// presents A (the browser checks it against the offer's a=fingerprint)
// and media flows both ways; a re-INVITE keeps A too, while a new call's
// offer announces B.
func TestNGDTLSCertificateReloadBeforeAnswer(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	certA := g.DTLSFingerprint().String()
	web := newWebPeer(t)
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	doc := docWebRTCFlags(t)
	toWebFlags, toSIPFlags := doc[2], doc[3]
	msg := func(cmd, id, from, to, sdp string, flags map[string]any) map[string]any {
		m := map[string]any{"command": cmd, "call-id": id, "from-tag": from, "sdp": sdp}
		if to != "" {
			m["to-tag"] = to
		}
		for k, v := range flags {
			m[k] = v
		}
		return m
	}
	const id = "cert-reload@test"
	sipOffer := sipAnswerAV(sipA, sipV, false)
	toWeb := sdpOf(t, ngDo(t, c, msg("offer", id, "sip", "", sipOffer, toWebFlags))).Media[0]
	if toWeb.Fingerprint != certA {
		t.Fatalf("the offer announces %s, want the gateway's %s", toWeb.Fingerprint, certA)
	}

	// The reload between the offer and the answer.
	dir := t.TempDir()
	b, err := generateDTLSCert()
	if err != nil {
		t.Fatal(err)
	}
	certPath, _ := writeCertFiles(t, dir, b, 0o600)
	sec, err := dtlsSection(dir, "dtls:\n  certificate: "+certPath+"\n  private_key: dtls-key.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	cfgB := ngConfig()
	cfgB.DTLS = sec.DTLS
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Reload(ctx, cfgB); err != nil {
		t.Fatal(err)
	}
	certB := b.fp.String()
	if got := g.DTLSFingerprint().String(); got != certB || certB == certA {
		t.Fatalf("after the reload the gateway's certificate is %s, want the file's %s (before: %s)", got, certB, certA)
	}

	toSIP := checkTowardSIP(t, ngDo(t, c, msg("answer", id, "sip", "web", web.browserAnswer("active"), toSIPFlags)).Str("sdp"))
	gwA, gwV := keyOf(t, toSIP.Media[0]), keyOf(t, toSIP.Media[1])
	gw := addrOf(toWeb)
	web.nominate(t, gw, toWeb.ICEUfrag, toWeb.ICEPwd)
	web.handshake(t, gw, true, certA) // fails unless the gateway presents A
	waitHandshakes(t, g, 1)
	decA, _ := gwA.Context()
	decV, _ := gwV.Context()
	toA, toV := addrOf(toSIP.Media[0]), addrOf(toSIP.Media[1])
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 1, 5)
	for _, s := range mustSessions(t, g) {
		if d := legOf(s, s.NG.OffererLeg).DTLS; d != nil {
			t.Errorf("the SIP side's leg has DTLS: %+v", d)
		}
		other := "internal"
		if s.NG.OffererLeg == "internal" {
			other = "cloud"
		}
		if d := legOf(s, other).DTLS; d != nil && d.Fingerprint.String() != certA {
			t.Errorf("session %s shows the gateway's fingerprint %s toward the browser, want %s", s.ID, d.Fingerprint, certA)
		}
	}

	// The browser re-offers with a new certificate of its own: a new
	// handshake, still with the certificate the call was announced.
	web.newCert(t)
	checkTowardSIP(t, ngDo(t, c, msg("offer", id, "web", "sip", web.browserAnswer("actpass"), toSIPFlags)).Str("sdp"))
	back := sdpOf(t, ngDo(t, c, msg("answer", id, "web", "sip", sipOffer, toWebFlags))).Media[0]
	if back.Fingerprint != certA {
		t.Errorf("the re-INVITE's answer announces %s, want %s", back.Fingerprint, certA)
	}
	web.handshake(t, gw, true, certA)
	waitHandshakes(t, g, 2)
	flowAV(t, web, gw, sipA, sipV, toA, toV, decA, decV, 6, 5)

	// A new call is announced the new certificate.
	sip2A, sip2V := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	if fp := sdpOf(t, ngDo(t, c, msg("offer", "cert-reload-2@test", "sip", "", sipAnswerAV(sip2A, sip2V, false), toWebFlags))).Media[0].Fingerprint; fp != certB {
		t.Errorf("a call offered after the reload announces %s, want %s", fp, certB)
	}
	ngDo(t, c, map[string]any{"command": "delete", "call-id": id})
	ngDo(t, c, map[string]any{"command": "delete", "call-id": "cert-reload-2@test"})
	testutil.WaitFor(t, "the calls' sessions to go", 5*time.Second, func() bool { return len(mustSessions(t, g)) == 0 })
}
