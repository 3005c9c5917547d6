package webrtc

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// The SDES side keys with AES_CM_128_HMAC_SHA1_80; its receiver decodes
// to 8 kHz PCM, analysed in 50 ms blocks.
const (
	sdesSuite  = "AES_CM_128_HMAC_SHA1_80"
	pcmuRate   = 8000
	blockSamps = 400
)

// audioCodec is what the SDES side's audio speaks.
type audioCodec struct {
	name   string // as in the browser's stats, audio/<name>
	pt     int
	rtpmap string   // "<codec>/<rate>[/<channels>]"
	encode []string // ffmpeg's output options for it
	rate   int      // the sender's sample rate
	frame  int      // samples per 20 ms at rate
}

// pcmu is G.711 µ-law, payload type 0, in 20 ms packets.
func pcmu() audioCodec {
	return audioCodec{name: "PCMU", pt: 0, rtpmap: "PCMU/8000", rate: pcmuRate, frame: 160,
		encode: []string{"-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1", "-packetsize", "172"}}
}

// opus is Opus under the browser's payload type pt, 20 ms frames.
func opus(pt int) audioCodec {
	return audioCodec{name: "opus", pt: pt, rtpmap: "opus/48000/2", rate: 48000, frame: 960,
		encode: []string{"-c:a", "libopus", "-b:a", "48k", "-frame_duration", "20", "-ar", "48000", "-ac", "2"}}
}

// rtpmapLine is the codec's rtpmap value: "<pt> <codec>/<rate>...".
func (c audioCodec) rtpmapLine() string { return fmt.Sprintf("%d %s", c.pt, c.rtpmap) }

// sdesKey is an SDES master key and salt (AES_CM_128: 16 + 14 bytes).
type sdesKey struct {
	Key  []byte
	Salt []byte
}

func newSDESKey(t testing.TB) sdesKey {
	t.Helper()
	b := make([]byte, 30)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return sdesKey{Key: b[:16], Salt: b[16:]}
}

// inline is the key in a=crypto's inline: form (base64 of key||salt).
func (k sdesKey) inline() string {
	return base64.StdEncoding.EncodeToString(append(append([]byte{}, k.Key...), k.Salt...))
}

// findFFmpeg returns ffmpeg's path, or skips t.
func findFFmpeg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg is not installed (Debian: apt-get install ffmpeg); the SDES side of the browser test needs it")
	}
	return p
}

// sdesPeer is the SIP-facing endpoint of the call, made of two ffmpeg
// processes no one here wrote: one receives SDES-keyed SRTP (PCMU or
// Opus), decrypts and decodes it to PCM, in which the test looks for the
// browser's tone; the other sends a sine as SRTP under the key the peer
// announces. (A video peer does the same with VP8: see ReceiveVideo.) The two processes cannot share one UDP port, so the test
// holds the port the peer announces (Addr) and forwards bytes, untouched,
// between it and them: from the port to the receiver, and from the sender
// out of the port to the remote. RTCP from the sender is dropped and
// counted: its RTP port carries RTP only.
//
// The test owns it; its processes and goroutines end when the test ends.
type sdesPeer struct {
	t      testing.TB
	ffmpeg string
	dir    string

	// set at creation, never changed
	port   *net.UDPConn                // the announced port
	fromTx *net.UDPConn                // where the sender sends
	rxAddr atomic.Pointer[net.UDPAddr] // where the receiver listens
	TxKey  sdesKey                     // the sender's key: goes into the peer's SDP

	// Codec is PCMU unless the test sets it before Receive and Send.
	Codec audioCodec

	remote atomic.Pointer[netip.AddrPort] // where media goes; nil until set

	toRx, fromRemote, toRemote, rtcpDropped, oversize atomic.Int64

	mu    sync.Mutex
	heard *toneTrack // the receiver's PCM

	wg sync.WaitGroup
}

// newSDESPeer creates the peer's sockets and starts forwarding; media
// flows once SetRemote and Receive/Send are called.
func newSDESPeer(t testing.TB, heardHz, otherHz float64) *sdesPeer {
	t.Helper()
	p := &sdesPeer{t: t, ffmpeg: findFFmpeg(t), dir: t.TempDir(), TxKey: newSDESKey(t), Codec: pcmu(),
		heard: newToneTrack(pcmuRate, heardHz, otherHz, float64(blockSamps)/pcmuRate)}
	var err error
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if p.port, err = net.ListenUDP("udp4", lo); err != nil {
		t.Fatal(err)
	}
	if p.fromTx, err = net.ListenUDP("udp4", lo); err != nil {
		t.Fatal(err)
	}
	p.rxAddr.Store(&net.UDPAddr{IP: lo.IP, Port: freePortPair(t)})
	p.wg.Add(2)
	go p.forwardIn()
	go p.forwardOut()
	t.Cleanup(func() {
		p.port.Close()
		p.fromTx.Close()
		p.wg.Wait()
	})
	return p
}

// Addr is the address the peer announces in its SDP.
func (p *sdesPeer) Addr() netip.AddrPort { return p.port.LocalAddr().(*net.UDPAddr).AddrPort() }

// SetRemote says where the peer's media goes (the other side's SDP).
func (p *sdesPeer) SetRemote(a netip.AddrPort) { p.remote.Store(&a) }

// forwardIn passes what reaches the announced port to the receiver.
func (p *sdesPeer) forwardIn() {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, _, err := p.port.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // net.ErrClosed at the end of the test
		}
		if n > 1500 {
			// The kernel splits a UDP GSO message into its datagrams
			// for a socket without UDP_GRO: this stays 0.
			p.oversize.Add(1)
		}
		p.fromRemote.Add(1)
		if _, err := p.port.WriteToUDP(buf[:n], p.rxAddr.Load()); err == nil {
			p.toRx.Add(1)
		}
	}
}

// forwardOut passes the sender's RTP out of the announced port.
func (p *sdesPeer) forwardOut() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := p.fromTx.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n >= 2 && buf[1] >= 192 && buf[1] <= 223 { // RTCP (RFC 5761 section 4)
			p.rtcpDropped.Add(1)
			continue
		}
		if r := p.remote.Load(); r != nil {
			if _, err := p.port.WriteToUDPAddrPort(buf[:n], *r); err == nil {
				p.toRemote.Add(1)
			}
		}
	}
}

// freePortPair returns an even port that, with the next one, was free on
// 127.0.0.1 (ffmpeg's RTP input takes port and port+1 for RTCP).
func freePortPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port &^ 1
		a.Close()
		c1, err1 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		c2, err2 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		if c1 != nil {
			c1.Close()
		}
		if c2 != nil {
			c2.Close()
		}
		if err1 == nil && err2 == nil {
			return port
		}
	}
	t.Fatal("no free even/odd UDP port pair on 127.0.0.1")
	return 0
}

// startProc starts an ffmpeg that is killed and reaped when the test
// ends; its stderr is logged if the test failed. stdout, if not nil,
// reads the process's standard output until it exits. exited is closed
// once the process has exited.
func (p *sdesPeer) startProc(name string, args []string, stdout func(io.Reader)) (exited <-chan struct{}) {
	p.t.Helper()
	cmd := exec.Command(p.ffmpeg, args...)
	var errOut lockedBuffer
	cmd.Stderr = &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out io.ReadCloser
	if stdout != nil {
		var err error
		if out, err = cmd.StdoutPipe(); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting the %s: %v", name, err)
	}
	read := make(chan struct{})
	if stdout != nil {
		go func() {
			defer close(read)
			stdout(out)
		}()
	} else {
		close(read)
	}
	done := make(chan struct{})
	go func() {
		<-read // Wait closes stdout: read it all first
		_ = cmd.Wait()
		close(done)
	}()
	p.t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.t.Errorf("the %s (pid %d) did not exit within 10 s of SIGKILL", name, cmd.Process.Pid)
		}
		if p.t.Failed() {
			p.t.Logf("%s stderr:\n%s", name, tail(errOut.String(), 3000))
		}
	})
	return done
}

// Receive starts the receiver for SRTP keyed with rxKey (the other
// side's a=crypto toward the peer). It decodes to 8 kHz PCM and feeds the
// tone analysis.
func (p *sdesPeer) Receive(rxKey sdesKey) {
	p.t.Helper()
	p.receive("SDES receiver (ffmpeg)", "audio", p.Codec.rtpmapLine(), rxKey, p.analyse,
		"-f", "s16le", "-ac", "1", "-ar", fmt.Sprint(pcmuRate), "pipe:1")
}

// receive writes the receiver's SDP for one m= line of kind with one
// rtpmap ("<pt> <codec>/<rate>") under rxKey, starts ffmpeg on it with
// output arguments out, and waits until it listens.
func (p *sdesPeer) receive(name, kind, rtpmap string, rxKey sdesKey, stdout func(io.Reader), out ...string) {
	p.t.Helper()
	pt, _, _ := strings.Cut(rtpmap, " ")
	// The port was free when chosen but is not held: another process may
	// take it before ffmpeg binds it, and then ffmpeg exits at once. Try
	// again on another port, up to twice.
	for attempt := 0; ; attempt++ {
		port := p.rxAddr.Load().Port
		sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=sdes receiver\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
			"m=%s %d RTP/SAVP %s\r\na=rtpmap:%s\r\na=crypto:1 %s inline:%s\r\na=recvonly\r\n",
			kind, port, pt, rtpmap, sdesSuite, rxKey.inline())
		path := filepath.Join(p.dir, "receiver.sdp")
		if err := os.WriteFile(path, []byte(sdp), 0o600); err != nil {
			p.t.Fatal(err)
		}
		args := []string{"-hide_banner", "-nostdin", "-loglevel", "warning", "-protocol_whitelist", "file,udp,rtp"}
		if kind == "audio" {
			// Audio needs no probing. Video does, and must keep what it
			// probed (no -fflags nobuffer): the browser sends its one key
			// frame first and another only when asked (a PLI, which the
			// receiver does not send).
			args = append(args, "-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0")
		}
		args = append(append(args, "-i", path), out...)
		exited := p.startProc(name, args, stdout)
		// ffmpeg opens its port only once it has read the SDP.
		testutil.WaitUDPBound(p.t, port, 10*time.Second)
		select {
		case <-exited:
			if attempt == 2 {
				p.t.Fatalf("the %s exited at start three times (port taken?)", name)
			}
			p.t.Logf("the %s exited at start; port %d taken? trying another", name, port)
			p.rxAddr.Store(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freePortPair(p.t)})
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

// analyse reads the receiver's PCM in blocks into the tone analysis.
func (p *sdesPeer) analyse(r io.Reader) {
	br := bufio.NewReader(r)
	raw := make([]byte, 2*blockSamps)
	x := make([]float64, blockSamps)
	for {
		if _, err := io.ReadFull(br, raw); err != nil {
			return
		}
		for i := range x {
			x[i] = float64(int16(binary.LittleEndian.Uint16(raw[2*i:]))) / 32768
		}
		p.mu.Lock()
		p.heard.add(x)
		p.mu.Unlock()
	}
}

// Send starts the sender: a sine at hz in the peer's codec, 20 ms
// packets, SRTP under TxKey, for at most a minute.
func (p *sdesPeer) Send(hz float64, ssrc uint32) {
	p.t.Helper()
	dst := p.fromTx.LocalAddr().(*net.UDPAddr).Port
	c := p.Codec
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%v:sample_rate=%d:samples_per_frame=%d", hz, c.rate, c.frame),
		"-t", "60"}
	args = append(args, c.encode...)
	args = append(args, "-payload_type", fmt.Sprint(c.pt), "-ssrc", fmt.Sprint(ssrc), "-f", "rtp",
		"-srtp_out_suite", sdesSuite, "-srtp_out_params", p.TxKey.inline(),
		fmt.Sprintf("srtp://127.0.0.1:%d?rtcpport=%d&pkt_size=1200", dst, dst))
	p.startProc("SDES sender (ffmpeg)", args, nil)
}

// heardTrack returns a copy of the receiver's tone analysis so far.
func (p *sdesPeer) heardTrack() toneTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	return *p.heard
}

// String reports the forwarding counters.
func (p *sdesPeer) String() string {
	return fmt.Sprintf("from remote %d (to receiver %d, over 1500 bytes %d), sender to remote %d, sender RTCP dropped %d",
		p.fromRemote.Load(), p.toRx.Load(), p.oversize.Load(), p.toRemote.Load(), p.rtcpDropped.Load())
}
