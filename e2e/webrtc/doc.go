// Package webrtc holds the real-browser acceptance test of the gateway's
// DTLS-SRTP legs: headless Chromium opens an RTCPeerConnection to
// mediaedge's DTLS leg while ffmpeg, which no one here wrote, speaks
// SDES-keyed SRTP on the other leg. It has no code of its own; everything
// is in its Linux-only test files.
//
// TestBrowserThroughGateway builds mediaedge from this tree, starts it
// with its ng listener on loopback and drives it exactly as Kamailio's
// rtpengine module would for a WebRTC caller and a SIP callee: the
// browser's offer goes to ng offer with transport-protocol RTP/SAVP, ICE
// remove and rtcp-mux demux, the SDES side's answer to ng answer with
// transport-protocol UDP/TLS/RTP/SAVPF, ICE force, DTLS passive (and, in
// a second run, active) and rtcp-mux require; the SDES side answers PCMU
// (and, in a third run, Opus).
// TestBrowserBundleThroughGateway adds the camera: audio and video on one
// bundled transport (max-bundle) toward the browser, two SDES m= lines
// toward ffmpeg (PCMU and VP8), each decoded at the other end.
// TestGatewayWrongSDESKeyIsSilent gives the gateway an SDES key ffmpeg
// does not use: the page must hear nothing.
// TestBrowserICERestartThroughGateway restarts ICE mid-call (a re-offer
// and re-answer through ng): media must come back both ways and stay
// past the gateway's DTLS handshake timeout. TestBrowserThroughStandIn
// runs the same browser, page and ffmpeg against a pion/webrtc stand-in
// for the gateway: it proves the harness on its own.
//
// The browser's microphone is Chromium's fake capture device fed from a
// WAV file the test writes (a steady 600 Hz sine; without the file the
// fake device beeps 400 Hz for 20 ms every 500 ms, too sparse to find
// reliably in PCMU). ffmpeg decodes what reaches the SDES side and the
// test finds the 600 Hz tone in that PCM by Goertzel. ffmpeg also sends a
// 1 kHz sine the other way; the page finds it with WebAudio (the same
// Goertzel over an AnalyserNode) and reports what it measured, with the
// peer connection's getStats, through a small HTTP signalling endpoint
// the test serves on 127.0.0.1 (the page POSTs its offer, long-polls for
// the answer, POSTs reports). Each tone must be heard for 2 s without a
// break (one missed block of 50-100 ms aside), and neither end may hear
// its own tone come back. As root, with tcpdump, the gateway tests also
// capture both legs and try every SRTP packet against every SDES key:
// none on the browser leg may open, and each on an SDES leg opens with
// its own key alone.
//
// Run it with chromium and ffmpeg installed (Debian: apt-get install
// chromium ffmpeg tcpdump); as root Chromium runs with --no-sandbox:
//
//	go test -race -count=1 -v ./e2e/webrtc/
//
// It skips, saying so, when chromium or ffmpeg is missing. A run takes
// about a minute: nine browser calls, and building mediaedge.
package webrtc
