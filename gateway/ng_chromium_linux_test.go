package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// ngChromiumPage makes an RTCPeerConnection with the fake camera and
// microphone, posts its offer to /offer, applies the answer and reports
// the connection state and the RTP packets received per kind to /report
// twice a second.
const ngChromiumPage = `<!doctype html><html><body><script>
const post = (p, b) => fetch(p, {method: 'POST', body: typeof b === 'string' ? b : JSON.stringify(b)});
(async () => {
  try {
    const s = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
    const pc = new RTCPeerConnection();
    s.getTracks().forEach(t => pc.addTrack(t, s));
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise(r => {
      if (pc.iceGatheringState === 'complete') r();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
      setTimeout(r, 3000);
    });
    const ans = await (await post('/offer', pc.localDescription.sdp)).text();
    await pc.setRemoteDescription({type: 'answer', sdp: ans});
    for (;;) {
      await new Promise(r => setTimeout(r, 500));
      const rep = {state: pc.connectionState, audio: 0, video: 0};
      (await pc.getStats()).forEach(x => { if (x.type === 'inbound-rtp') rep[x.kind] = x.packetsReceived; });
      await post('/report', rep);
    }
  } catch (e) { post('/report', {error: String(e)}); }
})();
</script></body></html>`

type ngChromiumReport struct {
	State string `json:"state"`
	Audio int    `json:"audio"`
	Video int    `json:"video"`
	Error string `json:"error"`
}

// TestNGChromiumBundle: headless Chromium offers audio and video with
// BUNDLE through ng (the docs' Kamailio flags) to a SIP endpoint pair on
// SDES. Chromium accepts the gateway's answer (ICE-lite, one DTLS
// transport for both m= lines) and connects; its audio reaches the SIP
// audio port and its video the SIP video port, each under the gateway's
// key toward that port and from the SSRCs its offer announced; media the
// SIP endpoints send reaches the page as audio and as video.
func TestNGChromiumBundle(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium)")
	}
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sipA, sipV := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	flags := docWebRTCFlags(t)
	const id = "chromium@test"

	type media struct {
		offer, toSIP *ng.SDP
		gwA, gwV     ngKey
	}
	got := make(chan media, 1)
	reports := make(chan ngChromiumReport, 64)
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, ngChromiumPage) })
	mux.HandleFunc("POST /offer", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		var answer string
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m := map[string]any{"command": "offer", "call-id": id, "from-tag": "web", "sdp": string(b)}
			for k, v := range flags[0] {
				m[k] = v
			}
			off, err := c.Call(ctx, m)
			if err != nil {
				reports <- ngChromiumReport{Error: "ng offer: " + err.Error()}
				return
			}
			toSIP, err := ng.ParseSDP([]byte(ng.Dict(off).Str("sdp")))
			offer, err2 := ng.ParseSDP(b)
			if err != nil || err2 != nil || len(toSIP.Media) != 2 {
				reports <- ngChromiumReport{Error: fmt.Sprintf("the offer: %v %v", err, err2)}
				return
			}
			md := media{offer: offer, toSIP: toSIP}
			for i, k := range []*ngKey{&md.gwA, &md.gwV} {
				for _, line := range toSIP.Media[i].Crypto {
					if kk, err := parseNGKey(line); err == nil && kk.Suite.Name == "AES_CM_128_HMAC_SHA1_80" {
						*k = kk
					}
				}
			}
			sipA.key.Tag, sipV.key.Tag = md.gwA.Tag, md.gwV.Tag
			m = map[string]any{"command": "answer", "call-id": id, "from-tag": "web", "to-tag": "sip", "sdp": sipAnswerAV(sipA, sipV, false)}
			for k, v := range flags[1] {
				m[k] = v
			}
			ans, err := c.Call(ctx, m)
			if err != nil {
				reports <- ngChromiumReport{Error: "ng answer: " + err.Error()}
				return
			}
			answer = ng.Dict(ans).Str("sdp")
			got <- md
		})
		io.WriteString(w, answer)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var rep ngChromiumReport
		if json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&rep) == nil {
			select {
			case reports <- rep:
			default:
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cmd := exec.Command(bin, "--headless=new", "--user-data-dir="+t.TempDir(), "--no-first-run", "--disable-gpu",
		"--disable-dev-shm-usage", "--disable-extensions", "--disable-background-networking", "--no-sandbox",
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns", "--disable-background-timer-throttling",
		"--disable-renderer-backgrounding", "http://"+ln.Addr().String()+"/")
	var out lockedOutput
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group this test started
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("chromium output (tail):\n%s", out.tail(4000))
		}
	})

	var md media
	select {
	case md = <-got:
	case rep := <-reports:
		t.Fatalf("the page: %+v", rep)
	case <-time.After(30 * time.Second):
		t.Fatal("Chromium did not post an offer in 30 s")
	}
	// The SIP endpoints send toward the page all along, 50 packets a
	// second each, until the test ends.
	encA, err := sipA.key.Context()
	if err != nil {
		t.Fatal(err)
	}
	encV, err := sipV.key.Context()
	if err != nil {
		t.Fatal(err)
	}
	send := func(enc *srtp.Context, e *ngEnd, to netip.AddrPort, pt uint8, ssrc uint32, seq uint16, payload []byte) {
		pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc, Timestamp: uint32(seq) * 960},
			Payload: payload}).Marshal()
		if ct, err := enc.EncryptRTP(nil, pkt, nil); err == nil {
			_, _ = e.conn.WriteToUDPAddrPort(ct, to)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); seq < 3000; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			send(encA, sipA, addrOf(md.toSIP.Media[0]), ptOpus, 0xa0d10, seq, []byte{0xf8, 0xff, 0xfe}) // Opus silence
			send(encV, sipV, addrOf(md.toSIP.Media[1]), ptVP8, 0x71de0, seq, []byte{0x90, 0x80, 0x00, 0x00, 0x00, 0x00})
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// What Chromium sends: audio at the SIP audio port from its audio
	// SSRC, video at the SIP video port from a video SSRC.
	decA, _ := md.gwA.Context()
	decV, _ := md.gwV.Context()
	for _, k := range []struct {
		end   *ngEnd
		dec   *srtp.Context
		media ng.Media
	}{{sipA, decA, md.offer.Media[0]}, {sipV, decV, md.offer.Media[1]}} {
		for i := 0; i < 20; i++ {
			r := sipRecv(t, k.end, k.dec)
			if !containsU32(k.media.SSRCs, r.SSRC) || !containsPT(k.media.PTs, r.PayloadType) {
				t.Fatalf("%s port got SSRC %d PT %d; the offer's %s line has SSRCs %v", k.media.Type, r.SSRC, r.PayloadType, k.media.Type, k.media.SSRCs)
			}
		}
	}
	deadline := time.After(30 * time.Second)
	var last ngChromiumReport
	for {
		select {
		case last = <-reports:
			if last.Error != "" {
				t.Fatalf("the page: %s", last.Error)
			}
			if last.State == "connected" && last.Audio > 10 && last.Video > 10 {
				return
			}
		case <-deadline:
			t.Fatalf("the page never received both kinds; last report %+v", last)
		}
	}
}

func containsPT(pts []uint8, pt uint8) bool {
	for _, p := range pts {
		if p == pt {
			return true
		}
	}
	return false
}

func containsU32(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// lockedOutput collects a child's output, bounded; safe for concurrent
// use.
type lockedOutput struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedOutput) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
