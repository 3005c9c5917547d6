package webrtc

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
)

// The SDES side's video: VP8, 320x240 at 15 frames a second.
const (
	videoW, videoH = 320, 240
	videoFPS       = 15
	// The video receiver scales every decoded frame to a thumbnail,
	// counted, not looked at: the browser's fake camera draws a moving
	// pattern that is hard to recognise, and the audio carries the
	// content checks.
	thumbW, thumbH = 32, 24
)

// videoFrames counts what a peer's video receiver decoded.
type videoFrames struct{ n atomic.Int64 }

// ReceiveVideo starts a receiver for VP8 as payload type pt under rxKey;
// it decodes every frame and counts it in frames.
func (p *sdesPeer) ReceiveVideo(rxKey sdesKey, pt int, frames *videoFrames) {
	p.t.Helper()
	count := func(r io.Reader) {
		buf := make([]byte, thumbW*thumbH)
		for {
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			frames.n.Add(1)
		}
	}
	p.receive("SDES video receiver (ffmpeg)", "video", fmt.Sprintf("%d VP8/90000", pt), rxKey, count,
		"-fps_mode", "passthrough", // each decoded frame once: no duplicates to keep a rate
		"-vf", fmt.Sprintf("scale=%d:%d", thumbW, thumbH), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1")
}

// SendVideo starts a sender of ffmpeg's test pattern as VP8 (payload type
// pt, a key frame every second) under TxKey, for at most a minute.
func (p *sdesPeer) SendVideo(pt int, ssrc uint32) {
	p.t.Helper()
	dst := p.fromTx.LocalAddr().(*net.UDPAddr).Port
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=%dx%d:rate=%d", videoW, videoH, videoFPS),
		"-t", "60", "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k", "-g", fmt.Sprint(videoFPS),
		"-payload_type", fmt.Sprint(pt), "-ssrc", fmt.Sprint(ssrc), "-f", "rtp",
		"-srtp_out_suite", sdesSuite, "-srtp_out_params", p.TxKey.inline(),
		fmt.Sprintf("srtp://127.0.0.1:%d?rtcpport=%d&pkt_size=1200", dst, dst)}
	p.startProc("SDES video sender (ffmpeg)", args, nil)
}
