package ngcall

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/gateway/ng"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNGKamailioBaresipCall is the acceptance test of the ng protocol: a
// real SIP call through Kamailio (its rtpengine module pointed at
// mediaedge's ng port, testdata/kamailio.cfg as documented in
// docs/ng.md) between two baresip user agents with mandatory SDES, the
// caller on AES_CM_128_HMAC_SHA1_80 (internal leg), the callee on
// AES_CM_128_HMAC_SHA1_32 (cloud leg). Everything is proven from a
// capture of the loopback traffic: the SDP each agent receives carries
// mediaedge's ports and mediaedge's own key; the four keys are distinct;
// the SRTP of each leg authenticates with that leg's key and no other;
// the audio each agent receives, decoded, equals the WAV file the other
// sends, frame by frame; and the BYE deletes the call and frees its
// ports. The same call through rtpengine (Debian rtpengine-daemon,
// userspace) runs as the reference: same checks of the SRTP and the
// audio, and it logs whether rtpengine handed each side the other's key
// (rtpengine 10.5 does, with one suite on both sides).
func TestNGKamailioBaresipCall(t *testing.T) {
	for _, tool := range []string{"kamailio", "baresip", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages kamailio, baresip, tcpdump)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("capturing on loopback with tcpdump needs root")
	}
	// Port ranges nobody else here uses: the relay's, and the agents' RTP.
	// Every port of the call (relay legs, the agents' RTP and SIP) lies in
	// one block below the kernel's ephemeral range (32768-60999), where no
	// other test's or process's ephemeral socket can take it between the
	// choice and the bind.
	base := 24000 + 200*(os.Getpid()%20)
	t.Run("mediaedge", func(t *testing.T) {
		cfg := ngConfig()
		cfg.Internal.Ports = config.PortRange{Min: uint16(base), Max: uint16(base + 49)}
		cfg.Cloud.Ports = config.PortRange{Min: uint16(base + 50), Max: uint16(base + 99)}
		cfg.Internal.Suites = []string{"AES_CM_128_HMAC_SHA1_80"}
		cfg.Cloud.Suites = []string{"AES_CM_128_HMAC_SHA1_32"}
		g := startGateway(t, cfg)
		var s gateway.SessionInfo
		r := runSIPCall(t, base, g.NGAddr(), func() {
			var sessions []gateway.SessionInfo
			testutil.WaitFor(t, "the call's session", 10*time.Second, func() bool { sessions = mustSessions(t, g); return len(sessions) == 1 })
			s = sessions[0]
		}, func() {
			testutil.WaitFor(t, "the call and its session to go after BYE", 10*time.Second, func() bool { return len(mustSessions(t, g)) == 0 && numCalls(t, g.NGAddr()) == 0 })
			for _, l := range []string{s.Internal.Local, s.Internal.LocalRTCP, s.Cloud.Local, s.Cloud.LocalRTCP} {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(l)))
				if err != nil {
					t.Errorf("port %s still held after the BYE: %v", l, err)
					continue
				}
				c.Close()
			}
		})
		if r.addrGB.String() != s.Cloud.Local || r.addrGA.String() != s.Internal.Local {
			t.Errorf("the agents were sent %s (callee) and %s (caller); the session's ports are %s and %s",
				r.addrGB, r.addrGA, s.Cloud.Local, s.Internal.Local)
		}
		if r.kA.Suite.Name != "AES_CM_128_HMAC_SHA1_80" || r.kGA.Suite.Name != "AES_CM_128_HMAC_SHA1_80" ||
			r.kB.Suite.Name != "AES_CM_128_HMAC_SHA1_32" || r.kGB.Suite.Name != "AES_CM_128_HMAC_SHA1_32" {
			t.Errorf("suites: caller %s, to caller %s, callee %s, to callee %s", r.kA.Suite.Name, r.kGA.Suite.Name, r.kB.Suite.Name, r.kGB.Suite.Name)
		}
		keys := []srtpcheck.Key{r.kA, r.kGA, r.kB, r.kGB}
		for i := range keys {
			for j := i + 1; j < len(keys); j++ {
				if bytes.Equal(keys[i].Master, keys[j].Master) {
					t.Errorf("keys %d and %d are the same", i, j)
				}
			}
		}
	})
	// The reference: the same call through rtpengine (userspace). With
	// one suite on both sides it hands the caller's key to the callee.
	t.Run("rtpengine", func(t *testing.T) {
		if _, err := exec.LookPath("rtpengine"); err != nil {
			t.Skip("rtpengine is not installed (Debian package rtpengine-daemon)")
		}
		ngAddr := freeAddr(t)
		rtpe := startProc(t, t.TempDir(), "rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
			"--interface=127.0.0.1", "--listen-ng="+ngAddr.String(), fmt.Sprintf("--port-min=%d", base), fmt.Sprintf("--port-max=%d", base+99),
			"--delete-delay=0")
		testutil.WaitFor(t, "the ng listener to answer ping", 10*time.Second, func() bool { return ngPing(ngAddr) })
		_ = rtpe
		r := runSIPCall(t, base, ngAddr, func() {}, func() {})
		if r.addrGA.Port() < uint16(base) || r.addrGA.Port() > uint16(base+99) || r.addrGB.Port() < uint16(base) || r.addrGB.Port() > uint16(base+99) {
			t.Errorf("rtpengine's SDP points at %s and %s", r.addrGA, r.addrGB)
		}
		t.Logf("rtpengine: the callee got the caller's key: %v; the caller got the callee's: %v",
			bytes.Equal(r.kGB.Master, r.kA.Master), bytes.Equal(r.kGA.Master, r.kB.Master))
	})
}

// sipResult is what a SIP call's capture showed: each party's key and
// the address its SDP gave (A caller, B callee, GA the relay toward the
// caller, GB toward the callee).
type sipResult struct {
	kA, kGA, kB, kGB             srtpcheck.Key
	addrA, addrGA, addrB, addrGB netip.AddrPort
}

// runSIPCall runs Kamailio (testdata/kamailio.cfg) toward the ng server at
// ngAddr and a 6-second call between two baresip agents, captured on
// loopback; during runs once the call is up, after once the caller has
// hung up. It checks every leg's SRTP and audio from the capture and
// returns the keys and addresses the SDP bodies carried.
func runSIPCall(t *testing.T, base int, ngAddr netip.AddrPort, during, after func()) sipResult {
	t.Helper()
	dir := t.TempDir()
	uaRTP := [2]int{base + 100, base + 150}
	lo := netip.MustParseAddr("127.0.0.1")
	// kamailio, caller, callee (baresip binds UDP and TCP on its port)
	sip := [3]netip.AddrPort{netip.AddrPortFrom(lo, uint16(base+190)), netip.AddrPortFrom(lo, uint16(base+192)), netip.AddrPortFrom(lo, uint16(base+194))}
	wav := filepath.Join(dir, "in.wav")
	pcm := writeULawWAV(t, wav, 8000*8)

	kam := startProc(t, dir, "kamailio", "-f", "../../gateway/testdata/kamailio.cfg", "-DD", "-E", "-Y", dir,
		"-A", "LISTEN=udp:"+sip[0].String(), "-A", fmt.Sprintf("NGSOCK=\"udp:%s\"", ngAddr))
	testutil.WaitFor(t, "Kamailio's rtpengine module to start", 15*time.Second, func() bool { return strings.Contains(kam.out(), "support for it enabled") })

	pcap := filepath.Join(dir, "call.pcap")
	filter := fmt.Sprintf("udp and portrange %d-%d", base, base+199)
	// A 32 MiB buffer and immediate mode: a busy machine drops no packet
	// of the capture, and stopping tcpdump loses no buffered block.
	dump := startProc(t, dir, "tcpdump", "-i", "lo", "-B", "32768", "-U", "--immediate-mode", "-w", pcap, filter)
	testutil.WaitFor(t, "tcpdump to listen", 10*time.Second, func() bool { return strings.Contains(dump.out(), "listening on") })

	ua := func(name string, sipAddr netip.AddrPort, rtp int, account string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		conf := strings.Join([]string{
			"poll_method epoll",
			"sip_listen " + sipAddr.String(),
			"net_interface 127.0.0.1",
			"audio_player aubridge,nowhere",
			"audio_alert aubridge,nowhere",
			"audio_source aufile," + wav,
			fmt.Sprintf("rtp_ports %d-%d", rtp, rtp+39),
			"module_path /usr/lib/baresip/modules",
			"module g711.so", "module aufile.so", "module aubridge.so", "module srtp.so",
			"module_app account.so", "module_app menu.so", ""}, "\n")
		if err := os.WriteFile(filepath.Join(d, "config"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "accounts"), []byte(account+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	callee := ua("callee", sip[2], uaRTP[1], fmt.Sprintf("<sip:bob@%s>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU;answermode=auto", sip[2]))
	caller := ua("caller", sip[1], uaRTP[0], fmt.Sprintf("<sip:alice@%s>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU;outbound=\"sip:%s\"", sip[1], sip[0]))
	b := startProc(t, dir, "baresip", "-f", callee, "-t", "30")
	testutil.WaitFor(t, "baresip to be ready", 10*time.Second, func() bool { return strings.Contains(b.out(), "baresip is ready") })
	// The caller hangs up (BYE) when it quits after 6 seconds.
	a := startProc(t, dir, "baresip", "-f", caller, "-t", "6", "-e", fmt.Sprintf("/dial sip:bob@%s", sip[2]))
	during()
	if err := a.wait(15 * time.Second); err != nil {
		t.Logf("caller: %v\n%s", err, a.out())
	}
	after()
	time.Sleep(300 * time.Millisecond)
	dump.stop()

	dgs, _, err := capture.ReadCaptureFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	// The SDP bodies as each party sent and received them.
	var r sipResult
	r.kA, r.addrA = sdpKey(t, sipBody(t, dgs, sip[1], sip[0], "INVITE "), -1)
	r.kB, r.addrB = sdpKey(t, sipBody(t, dgs, sip[2], sip[0], "SIP/2.0 200"), -1)
	// The offer toward the callee may list several keys (rtpengine's
	// does): the callee's answer names the one it took by its tag.
	r.kGB, r.addrGB = sdpKey(t, sipBody(t, dgs, sip[0], sip[2], "INVITE "), r.kB.Tag)
	r.kGA, r.addrGA = sdpKey(t, sipBody(t, dgs, sip[0], sip[1], "SIP/2.0 200"), -1)
	kA, kGA, kB, kGB := r.kA, r.kGA, r.kB, r.kGB
	addrA, addrGA, addrB, addrGB := r.addrA, r.addrGA, r.addrB, r.addrGB
	keys := []srtpcheck.Key{kA, kGA, kB, kGB}
	got := map[string]int{}
	// Each leg's SRTP, as captured, opens with that leg's key only, and
	// the audio that arrives is the WAV file, frame by frame.
	for _, leg := range []struct {
		name     string
		src, dst netip.AddrPort
		key      srtpcheck.Key
	}{
		{"caller to relay", addrA, addrGA, kA},
		{"relay to callee", addrGB, addrB, kGB},
		{"callee to relay", addrB, addrGB, kB},
		{"relay to caller", addrGA, addrA, kGA},
	} {
		t.Run(leg.name, func(t *testing.T) {
			var others [][]srtpcheck.Key
			for _, k := range keys {
				if !bytes.Equal(k.Master, leg.key.Master) {
					others = append(others, []srtpcheck.Key{k})
				}
			}
			ctx, err := leg.key.Context(srtp.SRTPReplayProtection(1024))
			if err != nil {
				t.Fatal(err)
			}
			var n, frames int
			offset := -1
			var seq0 uint16
			for _, d := range dgs {
				if !sameHostPort(d.Src, leg.src) || !sameHostPort(d.Dst, leg.dst) || !capture.LooksLikeRTP(d.Payload) {
					continue
				}
				// The gateway sends with UDP GSO: on loopback the capture
				// holds the unsegmented message.
				segs := [][]byte{d.Payload}
				if !srtpcheck.OpensWithAny(d.Payload, []srtpcheck.Key{leg.key}) {
					if segs = srtpcheck.SplitGSO(d.Payload, []srtpcheck.Key{leg.key}); segs == nil {
						t.Fatalf("a %d-byte datagram at %s does not open with the leg's key", len(d.Payload), d.Time.Format("15:04:05.000000"))
					}
				}
				for _, seg := range segs {
					n++
					if srtpcheck.OpensWithAny(seg, others...) {
						t.Fatalf("packet %d opens with another leg's key", n)
					}
					plain, err := ctx.DecryptRTP(nil, seg, nil)
					if err != nil {
						t.Fatalf("packet %d does not open with the leg's key: %v", n, err)
					}
					if checkFrame(t, plain, pcm, &offset, &seq0) {
						frames++
					}
				}
			}
			t.Logf("%d packets, %d frames equal to the WAV file", n, frames)
			got[leg.name] = frames
			// 6 seconds of 20 ms frames; allow for call set-up.
			if frames < 150 {
				t.Errorf("%d packets, %d frames matched; want at least 150 frames", n, frames)
			}
		})
	}
	// What came out on one leg is what went in on the other: at most the
	// frames in flight when the BYE closed the sockets are missing.
	for in, out := range map[string]string{"caller to relay": "relay to callee", "callee to relay": "relay to caller"} {
		if d := got[in] - got[out]; d < 0 || d > 3 {
			t.Errorf("%d frames %s, %d %s", got[in], in, got[out], out)
		}
	}
	return r
}

// sameHostPort compares two addresses ignoring a v4-mapped form.
func sameHostPort(a, b netip.AddrPort) bool {
	return a.Addr().Unmap() == b.Addr().Unmap() && a.Port() == b.Port()
}

// sipBody returns the SDP body of the first SIP message from src to dst
// whose first line starts with start.
func sipBody(t *testing.T, dgs []capture.Datagram, src, dst netip.AddrPort, start string) []byte {
	t.Helper()
	for _, d := range dgs {
		if !sameHostPort(d.Src, src) || !sameHostPort(d.Dst, dst) || !bytes.HasPrefix(d.Payload, []byte(start)) {
			continue
		}
		if _, body, ok := bytes.Cut(d.Payload, []byte("\r\n\r\n")); ok && len(body) > 0 {
			return body
		}
	}
	t.Fatalf("no %q with SDP from %s to %s in the capture", start, src, dst)
	return nil
}

// sdpKey returns the a=crypto key of an SDP body's audio line (the one
// with tag when tag >= 0, else the only one) and where that audio goes.
func sdpKey(t *testing.T, body []byte, tag int) (srtpcheck.Key, netip.AddrPort) {
	t.Helper()
	s, err := ng.ParseSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	m := s.Media[0]
	addr := netip.AddrPortFrom(m.Addr, uint16(m.Port))
	if tag < 0 && len(m.Crypto) != 1 {
		t.Fatalf("%d a=crypto lines in\n%s", len(m.Crypto), body)
	}
	for _, line := range m.Crypto {
		k, err := srtpcheck.ParseCryptoLine("a=crypto:" + line)
		if err != nil {
			t.Fatal(err)
		}
		if tag < 0 || k.Tag == tag {
			return k, addr
		}
	}
	t.Fatalf("no a=crypto line with tag %d in\n%s", tag, body)
	return srtpcheck.Key{}, addr
}

// writeULawWAV writes n samples of 8 kHz mono 16-bit PCM whose values are
// exact G.711 mu-law levels, so that encoding and decoding gives them
// back unchanged, and returns the samples.
func writeULawWAV(t *testing.T, path string, n int) []int16 {
	t.Helper()
	pcm := make([]int16, n)
	x := uint32(2463534242)
	for i := range pcm {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		pcm[i] = ulawSample(byte(x))
	}
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(8000), uint32(16000), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(2*n))
	_ = binary.Write(&b, binary.LittleEndian, pcm)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return pcm
}

// ulawSample decodes one G.711 mu-law byte.
func ulawSample(u byte) int16 {
	u = ^u
	t := (int(u&0x0f) << 3) + 0x84
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(0x84 - t)
	}
	return int16(t - 0x84)
}

func ulawDecode(p []byte) []int16 {
	out := make([]int16, len(p))
	for i, u := range p {
		out[i] = ulawSample(u)
	}
	return out
}

func findFrame(pcm, frame []int16) int {
	for i := 0; i+len(frame) <= len(pcm); i++ {
		if equalPCM(pcm[i:i+len(frame)], frame) {
			return i
		}
	}
	return -1
}

func equalPCM(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// proc is a peer program started by a test; its output is kept.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startProc(t testing.TB, dir, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, log: filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())), done: make(chan error, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.out(), 3000))
		}
	})
	return p
}

func (p *proc) out() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// wait waits for the program to end on its own.
func (p *proc) wait(d time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		return fmt.Errorf("%s still running after %s", p.cmd.Path, d)
	}
}

// stop ends the program's process group (SIGTERM, then SIGKILL) and
// waits for it.
func (p *proc) stop() {
	select {
	case err := <-p.done:
		p.done <- err
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		err := <-p.done
		p.done <- err
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// checkFrame compares the payload of a decrypted 20 ms PCMU packet with
// the WAV file: the first one found sets the offset, every later one
// must sit where its sequence number says.
func checkFrame(t *testing.T, plain []byte, pcm []int16, offset *int, seq0 *uint16) bool {
	t.Helper()
	seq := binary.BigEndian.Uint16(plain[2:4])
	payload := plain[12+4*int(plain[0]&0x0f):]
	if len(payload) != 160 {
		return false
	}
	decoded := ulawDecode(payload)
	if *offset < 0 {
		if *offset = findFrame(pcm, decoded); *offset < 0 {
			t.Fatalf("the first frame is not in the WAV file")
		}
		*seq0 = seq
	}
	at := *offset + 160*int(seq-*seq0)
	if at+160 > len(pcm) || !equalPCM(pcm[at:at+160], decoded) {
		t.Fatalf("frame of seq %d differs from the WAV file at sample %d", seq, at)
	}
	return true
}

// ngPing reports whether an ng server answers ping at addr.
func ngPing(addr netip.AddrPort) bool {
	c, err := sut.DialNG(addr)
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Call(ctx, map[string]any{"command": "ping"})
	return err == nil
}
