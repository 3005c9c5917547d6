package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// answerSDP is the gateway's SDP answer toward a WebRTC offerer for a
// DTLS leg, written from session info as docs/gateway.md shows it;
// ssrc is the stream the gateway forwards from the other leg.
func answerSDP(li *LegInfo, ssrc uint32) string {
	d := li.DTLS
	host, port, _ := strings.Cut(li.Local, ":")
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0\r\n", host)
	fmt.Fprintf(&b, "m=audio %s UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 %s\r\na=mid:0\r\na=rtcp-mux\r\n", port, host)
	fmt.Fprintf(&b, "a=setup:%s\r\na=fingerprint:%s\r\na=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", d.Setup, d.Fingerprint, d.ICE.Ufrag, d.ICE.Pwd)
	for _, c := range d.ICE.Candidates {
		fmt.Fprintf(&b, "a=candidate:%s\r\n", c)
	}
	fmt.Fprintf(&b, "a=end-of-candidates\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n")
	fmt.Fprintf(&b, "a=msid:gw gw-audio\r\na=ssrc:%d cname:mediaedge\r\n", ssrc)
	return b.String()
}

// sdpAttr returns the value of the first a=<name>: line of sdp.
func sdpAttr(sdp, name string) string {
	for _, l := range strings.Split(sdp, "\r\n") {
		if v, ok := strings.CutPrefix(l, "a="+name+":"); ok {
			return v
		}
	}
	return ""
}

// TestDTLSWithPionWebRTC runs a pion/webrtc PeerConnection (ICE, DTLS,
// SRTP as a browser does them) against a DTLS leg whose other leg is
// SDES: the offer's fingerprint and a=setup go into the request, the
// session info becomes the answer, and audio RTP crosses the gateway both
// ways byte for byte.
func TestDTLSWithPionWebRTC(t *testing.T) {
	// passive: pion connects; active: the gateway connects once ICE
	// nominated the pair (it has no remote before).
	for _, role := range []DTLSRole{DTLSPassive, DTLSActive} {
		t.Run(string(role), func(t *testing.T) { testPionWebRTC(t, role) })
	}
}

func testPionWebRTC(t *testing.T, role DTLSRole) {
	cfg := testConfig()
	cfg.DTLS.Setup = string(role)
	g := startGateway(t, cfg)
	sip := newPeer(t)
	sipKey := newKeyLine(t, suiteAEAD128)

	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(0)
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 256)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- append([]byte(nil), p.Payload...):
			default:
			}
		}
	})
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gather := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gather
	osdp := pc.LocalDescription().SDP

	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, Setup: sdpAttr(osdp, "setup"), Fingerprint: sdpAttr(osdp, "fingerprint")},
		Cloud:    LegRequest{Remote: sip.addr(), RTCPMux: true, Crypto: sipKey},
	})
	const sipSSRC = 0x2222
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP(&info.Internal, sipSSRC)}); err != nil {
		t.Fatalf("the gateway's answer: %v", err)
	}
	select {
	case <-connected:
	case <-time.After(15 * time.Second):
		t.Fatalf("not connected: %s; gateway: %+v", pc.ConnectionState(), mustShow(t, g, info.ID).Internal.DTLS)
	}
	d := waitDTLS(t, g, info.ID, true, DTLSStateConnected)
	if d.Setup != role {
		t.Fatalf("the gateway took role %s for the offer's actpass", d.Setup)
	}
	if li := mustShow(t, g, info.ID).Internal; !li.Latched {
		t.Fatal("ICE did not latch the leg's remote")
	}

	sipIn := contextFor(t, info.Cloud.Crypto, true)
	sipOut := contextFor(t, sipKey, false)
	for i := 0; i < 20; i++ {
		// web -> sip
		pay := bytes.Repeat([]byte{byte(i), 0xa5}, 40)
		if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i + 1),
			Timestamp: uint32(i) * 960}, Payload: pay}); err != nil {
			t.Fatal(err)
		}
		var plain []byte
		for plain == nil {
			b, _ := sip.recv(3 * time.Second)
			if b == nil {
				t.Fatalf("packet %d: nothing reached the SDES peer", i)
			}
			if isRTCP(b) {
				continue // pion's receiver reports
			}
			if plain, err = sipIn.DecryptRTP(nil, b, nil); err != nil {
				t.Fatalf("packet %d: the SDES peer cannot decrypt: %v", i, err)
			}
		}
		var p rtp.Packet
		if err := p.Unmarshal(plain); err != nil || !bytes.Equal(p.Payload, pay) {
			t.Fatalf("packet %d: payload differs (%v)", i, err)
		}
		// sip -> web
		pay2 := bytes.Repeat([]byte{0x5a, byte(i)}, 40)
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i + 1),
			Timestamp: uint32(i) * 960, SSRC: sipSSRC}, Payload: pay2}).Marshal()
		sip.send(info.Cloud.Local, encRTP(t, sipOut, b))
		select {
		case rp := <-got:
			if !bytes.Equal(rp, pay2) {
				t.Fatalf("packet %d: the WebRTC peer got %x, want %x", i, rp, pay2)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("packet %d: nothing reached the WebRTC peer", i)
		}
	}
	if err := pc.Close(); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
		t.Fatal(err)
	}
}
