package gateway

import (
	"testing"

	"github.com/pion/rtcp"
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
		{"an unknown payload type", rtpPT(50), false, a},
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
				t.Errorf("routed to session %s, want %s", got.s.id, tc.want.s.id)
			}
		})
	}
	sv.ended = true
	if got := b.route(a, rtpPT(96), false); got != a {
		t.Errorf("a packet for an ended session went to it")
	}
}
