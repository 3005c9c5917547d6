package gateway

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// TestDTLSBundle: the WebRTC legs of an audio and a video session share
// one socket and one DTLS handshake (BUNDLE); packets are routed to each
// session by payload type and SSRC, both ways, byte for byte; an SSRC
// both SIP sides send is refused rather than protected twice under one
// key; the socket outlives the first session and carries the second.
func TestDTLSBundle(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 1
	g := startGateway(t, cfg)
	web := newDTLSPeer(t)
	sipA, sipV := newPeer(t), newPeer(t)
	keyA, keyV := newKeyLine(t, suiteAES128SHA80), newKeyLine(t, suiteAEAD128)
	mk := func(sip *peer, key string) *SessionInfo {
		return mustCreate(t, g, CreateRequest{
			Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: "active", Fingerprint: web.cert.fp.String()},
			Cloud:    LegRequest{Remote: sip.addr(), RTCPMux: true, Crypto: key},
		})
	}
	audio, video := mk(sipA, keyA), mk(sipV, keyV)
	sa, _ := g.lookup(audio.ID)
	sv, _ := g.lookup(video.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var berr error
	if err := sa.w.do(ctx, func() {
		berr = sa.w.bundleLegs(&sa.legs[legInternal], &sv.legs[legInternal], []uint8{111}, []uint8{96})
	}); err != nil || berr != nil {
		t.Fatalf("bundle: %v %v", err, berr)
	}
	if got := mustShow(t, g, video.ID).Internal.Local; got != audio.Internal.Local {
		t.Fatalf("the video leg is on %s, not the bundle's %s", got, audio.Internal.Local)
	}
	conn, err := web.handshake(audio.Internal.Local, true, g.DTLSFingerprint(), dtlsPeerOpts{})
	if err != nil {
		t.Fatal(err)
	}
	waitDTLS(t, g, audio.ID, true, DTLSStateConnected)
	waitDTLS(t, g, video.ID, true, DTLSStateConnected)
	webOut, webIn := srtpContexts(t, conn, true)
	inA, inV := contextFor(t, audio.Cloud.Crypto, true), contextFor(t, video.Cloud.Crypto, true)
	outA, outV := contextFor(t, keyA, false), contextFor(t, keyV, false)
	bundle := udpAddr(t, audio.Internal.Local)

	pkt := func(ssrc uint32, pt uint8, seq uint16) []byte {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc},
			Payload: bytes.Repeat([]byte{pt, byte(seq)}, 30)}).Marshal()
		return b
	}
	toWeb := func(from *peer, local string, ctx *srtp.Context, plain []byte) {
		t.Helper()
		from.send(local, encRTP(t, ctx, plain))
		b := web.recvMedia(2 * time.Second)
		if b == nil {
			t.Fatal("nothing reached the WebRTC peer")
		}
		got, err := webIn.DecryptRTP(nil, b, nil)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("the WebRTC peer got a different packet (%v)", err)
		}
	}
	for seq := uint16(1); seq <= 5; seq++ {
		a, v := pkt(0xa1, 111, seq), pkt(0xb1, 96, seq)
		web.conn.WriteToUDP(encRTP(t, webOut, a), bundle)
		mustRecvRTP(t, sipA, inA, a)
		web.conn.WriteToUDP(encRTP(t, webOut, v), bundle)
		mustRecvRTP(t, sipV, inV, v)
		toWeb(sipA, audio.Cloud.Local, outA, pkt(0x2a, 111, seq))
		toWeb(sipV, video.Cloud.Local, outV, pkt(0x2b, 96, seq))
	}
	// The video SIP side sends the audio SIP side's SSRC: refused.
	sipV.send(video.Cloud.Local, encRTP(t, outV, pkt(0x2a, 96, 50)))
	waitCount(t, "bundle_ssrc_conflict drops", func() float64 { return float64(dropsFor(g, legInternal, reasonBundleSSRC)) }, 1)
	if b := web.recvMedia(100 * time.Millisecond); b != nil {
		t.Fatal("a conflicting SSRC reached the WebRTC peer")
	}

	// The audio session ends; the video session keeps the socket.
	if err := g.Delete(ctx, audio.ID); err != nil {
		t.Fatal(err)
	}
	for seq := uint16(10); seq <= 12; seq++ {
		v := pkt(0xb1, 96, seq)
		web.conn.WriteToUDP(encRTP(t, webOut, v), bundle)
		mustRecvRTP(t, sipV, inV, v)
		toWeb(sipV, video.Cloud.Local, outV, pkt(0x2b, 96, seq))
	}
	if d := mustShow(t, g, video.ID).Internal.DTLS; d.State != DTLSStateConnected {
		t.Fatalf("video leg after the audio session ended: %s", d.State)
	}
}
