// Package webrtc holds the real-browser acceptance test of the gateway's
// DTLS-SRTP legs: headless Chromium opens an RTCPeerConnection to one leg
// while ffmpeg, which no one here wrote, speaks SDES-keyed SRTP on the
// other. It has no code of its own; everything is in its Linux-only
// test files.
//
// The browser's microphone is Chromium's fake capture device fed from a
// WAV file the test writes (a steady 600 Hz sine; without the file the
// fake device beeps 400 Hz for 20 ms every 500 ms, too sparse to find in
// a few seconds of PCMU). ffmpeg decodes what reaches the SDES side and
// the test finds the 600 Hz tone in that PCM by Goertzel. ffmpeg also
// sends a 1 kHz sine the other way; the page finds it with WebAudio and
// reports what it measured, with the peer connection's getStats, through
// a small HTTP signalling endpoint the test serves on 127.0.0.1.
//
// Run it as root (Chromium then needs --no-sandbox, which the test
// passes) with chromium and ffmpeg installed (Debian: apt-get install
// chromium ffmpeg):
//
//	go test -race -count=1 -v ./e2e/webrtc/
//
// It skips, saying so, when chromium or ffmpeg is missing.
package webrtc
