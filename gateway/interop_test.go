package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// Interop with SRTP implementations nobody here wrote: ffmpeg's SRTP
// muxer sends a generated tone into the internal leg with its key;
// GStreamer's srtpdec (libsrtp2) decrypts the cloud leg's output with the
// gateway's key and depayloads it; the received G.711 frames must be the
// ones ffmpeg encoded. Commands as in shared/peers/srtp/interop.sh.

const (
	interopSSRC = 305419896
	// A 3 s chirp (not periodic, so frames cannot match by accident) in
	// 160-sample frames, so that ffmpeg -re sends one packet per 20 ms.
	interopSignal = "aevalsrc=0.5*sin(2*PI*(300+150*t)*t):s=8000:d=3:n=160"
)

func TestInteropFFmpegToGStreamer(t *testing.T) {
	haveTool(t, "ffmpeg")
	haveTool(t, "gst-launch-1.0")
	for _, el := range []struct{ name, pkg string }{
		{"srtpdec", "gstreamer1.0-plugins-bad"}, {"udpsrc", "gstreamer1.0-plugins-good"}, {"rtppcmudepay", "gstreamer1.0-plugins-good"},
	} {
		if out, err := exec.Command("gst-inspect-1.0", el.name).CombinedOutput(); err != nil {
			t.Skipf("GStreamer's %s is missing (%s): %s", el.name, el.pkg, bytes.TrimSpace(out))
		}
	}
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref.ul")
	run(t, 20*time.Second, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", interopSignal,
		"-c:a", "pcm_mulaw", "-f", "mulaw", ref)
	want, err := os.ReadFile(ref)
	if err != nil || len(want) != 24000 {
		t.Fatalf("reference: %d bytes, %v", len(want), err)
	}

	cfg := testConfig()
	// ffmpeg sends RTCP to the RTP port plus one: real, adjacent pairs.
	cfg.Internal.Ports = config.PortRange{Min: 36000, Max: 36999}
	g := startGateway(t, cfg)
	for _, tc := range []struct {
		suite          *Suite
		cipher, auth   string
		rcipher, rauth string
		// wrongKey gives the receiver ffmpeg's key instead of the
		// gateway's: a negative control, nothing may decode.
		wrongKey bool
	}{
		{suiteAES128SHA32, "aes-128-icm", "hmac-sha1-32", "aes-128-icm", "hmac-sha1-80", false},
		{suiteAEAD256, "aes-256-gcm", "null", "aes-256-gcm", "null", false},
		{suiteAES128SHA80, "aes-128-icm", "hmac-sha1-80", "aes-128-icm", "hmac-sha1-80", true},
	} {
		name := "cloud-" + tc.suite.Name
		if tc.wrongKey {
			name += "-receiver-with-internal-key"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rxPort := testutil.FreePort(t)
			info := mustCreate(t, g, CreateRequest{
				Internal: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80)},
				Cloud: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80), Suite: tc.suite.Name,
					Remote: fmt.Sprintf("127.0.0.1:%d", rxPort)},
			})
			// ffmpeg's key is the internal peer's key the session was
			// created with.
			sess, _ := g.lookup(info.ID)
			var keyA string
			_ = sess.w.do(context.Background(), func() {
				k := sess.legs[legInternal].in[0]
				keyA = (&Crypto{Tag: 1, Suite: k.suite, Keys: []MasterKey{k.mk}}).String()
			})
			gw, err := ParseCrypto(info.Cloud.Crypto)
			if err != nil {
				t.Fatal(err)
			}
			keyB := hex.EncodeToString(append(append([]byte{}, gw.Keys[0].Key...), gw.Keys[0].Salt...))
			if tc.wrongKey {
				a, _ := ParseCrypto(keyA)
				keyB = hex.EncodeToString(append(append([]byte{}, a.Keys[0].Key...), a.Keys[0].Salt...))
			}

			rx := filepath.Join(dir, name+".ul")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			caps := fmt.Sprintf("application/x-srtp, media=(string)audio, clock-rate=(int)8000, encoding-name=(string)PCMU, "+
				"payload=(int)0, ssrc=(uint)%d, srtp-key=(buffer)%s, srtp-cipher=(string)%s, srtp-auth=(string)%s, "+
				"srtcp-cipher=(string)%s, srtcp-auth=(string)%s", interopSSRC, keyB, tc.cipher, tc.auth, tc.rcipher, tc.rauth)
			gst := exec.CommandContext(ctx, "gst-launch-1.0", "-e", "udpsrc", "address=127.0.0.1", fmt.Sprintf("port=%d", rxPort),
				"caps="+caps, "!", "srtpdec", "!", "rtppcmudepay", "!", "filesink", "location="+rx)
			var gstOut bytes.Buffer
			gst.Stdout, gst.Stderr = &gstOut, &gstOut
			if err := gst.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = gst.Process.Kill(); _ = gst.Wait() }()
			testutil.WaitUDPBound(t, rxPort, 15*time.Second) // udpsrc must listen before ffmpeg sends

			local, _ := config.ParseAddrPort(info.Internal.Local)
			localRTCP, _ := config.ParseAddrPort(info.Internal.LocalRTCP)
			run(t, 20*time.Second, "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", interopSignal,
				"-c:a", "pcm_mulaw", "-ssrc", fmt.Sprint(interopSSRC), "-payload_type", "0", "-f", "rtp",
				"-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", strings.TrimPrefix(keyA, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
				fmt.Sprintf("srtp://127.0.0.1:%d?rtcpport=%d", local.Port(), localRTCP.Port()))
			time.Sleep(300 * time.Millisecond)
			_ = gst.Process.Signal(os.Interrupt) // -e: EOS, the file is flushed
			done := make(chan error, 1)
			go func() { done <- gst.Wait() }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Log("gst-launch did not stop on SIGINT")
			}
			got, _ := os.ReadFile(rx)
			matched, corrupt := matchFrames(want, got, 160)
			st := mustShow(t, g, info.ID)
			t.Logf("%s: %d of %d frames identical, %d corrupt; internal in %d (rtcp %d), cloud out %d, auth failures %d",
				tc.suite.Name, matched, len(want)/160, corrupt, st.Internal.Counters.PacketsIn, st.Internal.Counters.RTCPIn,
				st.Cloud.Counters.PacketsOut, st.Internal.Counters.AuthFailures)
			if tc.wrongKey {
				if len(got) != 0 {
					t.Fatalf("a receiver with the internal leg's key decoded %d bytes of the cloud leg", len(got))
				}
				return
			}
			if corrupt != 0 || matched < len(want)/160*95/100 {
				t.Fatalf("received %d bytes: %d frames match, %d corrupt; gst said:\n%s", len(got), matched, corrupt, gstOut.String())
			}
			if st.Internal.Counters.AuthFailures != 0 {
				t.Errorf("%d of ffmpeg's packets failed authentication", st.Internal.Counters.AuthFailures)
			}
		})
	}
}

// matchFrames counts the frames of got that appear in want in order; a
// frame that matches nothing is corrupt.
func matchFrames(want, got []byte, size int) (matched, corrupt int) {
	pos := 0
	for i := 0; i+size <= len(got); i += size {
		f := got[i : i+size]
		j := pos
		for j+size <= len(want) && !bytes.Equal(want[j:j+size], f) {
			j += size
		}
		if j+size > len(want) {
			corrupt++
			continue
		}
		matched++
		pos = j + size
	}
	return matched, corrupt
}

func run(t *testing.T, timeout time.Duration, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}
