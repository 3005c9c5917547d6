//go:build linux

package ngcall

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNGKamailioReInviteReKeys is the re-keying acceptance test of the ng
// protocol inside a real SIP call: SIPp is the caller (signalling only,
// through Kamailio and testdata/kamailio.cfg), baresip the callee. The
// caller's INVITE offers key K1; after 3 seconds of media its re-INVITE
// offers a new key K2 on the same dialog, which Kamailio hands to
// mediaedge as another offer and answer. The test is the caller's media:
// it sends SRTP with pion/srtp under K1, switches to K2 once the 200 OK
// of the re-INVITE is in (RFC 4568 section 7.1.4), with continuous
// sequence numbers, and receives what the relay sends it. Proven from a
// capture of both legs: after the switch the caller's packets open with
// K2 only; every packet the caller sent, before and after the switch,
// reached the callee intact under the relay's unchanged key toward it;
// the callee's leg kept its keys and its audio reached the caller
// without a gap across the re-INVITE; and the SDP mediaedge sent back
// for the re-INVITE carries the same ports and its same key toward the
// caller (docs/ng.md: the gateway's keys toward both sides stay).
func TestNGKamailioReInviteReKeys(t *testing.T) {
	for _, tool := range []string{"kamailio", "baresip", "sipp", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages kamailio, baresip, sip-tester, tcpdump)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("capturing on loopback with tcpdump needs root")
	}
	// The block of ports TestNGKamailioBaresipCall uses (it runs before or
	// after this test, never beside it): relay 0-99, the caller's media
	// 100-101, the callee's 150-189, SIP 190-194.
	base := 24000 + 200*(os.Getpid()%20)
	cfg := ngConfig()
	cfg.Internal.Ports = config.PortRange{Min: uint16(base), Max: uint16(base + 49)}
	cfg.Cloud.Ports = config.PortRange{Min: uint16(base + 50), Max: uint16(base + 99)}
	cfg.Internal.Suites = []string{"AES_CM_128_HMAC_SHA1_80"}
	cfg.Cloud.Suites = []string{"AES_CM_128_HMAC_SHA1_32"}
	g := startGateway(t, cfg)

	dir := t.TempDir()
	lo := netip.MustParseAddr("127.0.0.1")
	media := netip.AddrPortFrom(lo, uint16(base+100))
	// kamailio, caller (SIPp), callee (baresip)
	sip := [3]netip.AddrPort{netip.AddrPortFrom(lo, uint16(base+190)), netip.AddrPortFrom(lo, uint16(base+192)), netip.AddrPortFrom(lo, uint16(base+194))}
	wav := filepath.Join(dir, "in.wav")
	pcm := writeULawWAV(t, wav, 8000*12)

	kam := startProc(t, dir, "kamailio", "-f", "../../gateway/testdata/kamailio.cfg", "-DD", "-E", "-Y", dir,
		"-A", "LISTEN=udp:"+sip[0].String(), "-A", fmt.Sprintf("NGSOCK=\"udp:%s\"", g.NGAddr()))
	testutil.WaitFor(t, "Kamailio's rtpengine module to start", 15*time.Second, func() bool { return strings.Contains(kam.out(), "support for it enabled") })
	pcap := filepath.Join(dir, "call.pcap")
	dump := startProc(t, dir, "tcpdump", "-i", "lo", "-U", "--immediate-mode", "-w", pcap, fmt.Sprintf("udp and portrange %d-%d", base, base+199))
	testutil.WaitFor(t, "tcpdump to listen", 10*time.Second, func() bool { return strings.Contains(dump.out(), "listening on") })

	callee := filepath.Join(dir, "callee")
	if err := os.MkdirAll(callee, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := strings.Join([]string{
		"poll_method epoll",
		"sip_listen " + sip[2].String(),
		"net_interface 127.0.0.1",
		"audio_player aubridge,nowhere",
		"audio_alert aubridge,nowhere",
		"audio_source aufile," + wav,
		fmt.Sprintf("rtp_ports %d-%d", base+150, base+189),
		"module_path /usr/lib/baresip/modules",
		"module g711.so", "module aufile.so", "module aubridge.so", "module srtp.so",
		"module_app account.so", "module_app menu.so", ""}, "\n")
	account := fmt.Sprintf("<sip:bob@%s>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU;answermode=auto\n", sip[2])
	if err := os.WriteFile(filepath.Join(callee, "config"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(callee, "accounts"), []byte(account), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startProc(t, dir, "baresip", "-f", callee, "-t", "40")
	testutil.WaitFor(t, "baresip to be ready", 10*time.Second, func() bool { return strings.Contains(b.out(), "baresip is ready") })

	su, err := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		t.Fatal(err)
	}
	k1, err := srtpcheck.NewKey(su)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := srtpcheck.NewKey(su)
	if err != nil {
		t.Fatal(err)
	}
	m := newCallerMedia(t, media)
	scen := filepath.Join(dir, "rekey.xml")
	if err := os.WriteFile(scen, []byte(reinviteScenario(dir, sip[2], media, k1, k2)), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startProc(t, dir, "sipp", "-sf", scen, "-i", "127.0.0.1", "-p", fmt.Sprint(sip[1].Port()), "-m", "1",
		"-nostdin", "-timeout", "40s", "-timeout_error", sip[0].String())

	// The caller's media starts with the 200 OK: mediaedge's address and
	// key toward the caller are in the SDP Kamailio relayed to SIPp.
	testutil.WaitFor(t, "the call to be answered", 15*time.Second, func() bool { return fileExists(filepath.Join(dir, "answered")) })
	var body []byte
	testutil.WaitFor(t, "the 200 OK in the capture", 5*time.Second, func() bool {
		dgs, _, err := capture.ReadCaptureFile(pcap)
		if err != nil {
			return false // tcpdump may be halfway through a record
		}
		body = findSIPBody(dgs, sip[0], sip[1], "SIP/2.0 200", "1 INVITE")
		return body != nil
	})
	kGA, addrGA := sdpKey(t, body, -1)
	switchSeq, lastSeq := m.send(t, addrGA, k1, k2, filepath.Join(dir, "rekeyed"))
	if err := a.wait(20 * time.Second); err != nil {
		t.Fatalf("SIPp: %v\n%s", err, tail(a.out(), 3000))
	}
	testutil.WaitFor(t, "the call and its session to go after the BYE", 10*time.Second, func() bool {
		return len(mustSessions(t, g)) == 0 && numCalls(t, g.NGAddr()) == 0
	})
	received := m.stop()
	time.Sleep(300 * time.Millisecond)
	dump.stop()

	dgs, _, err := capture.ReadCaptureFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	// The SDP bodies: the first offer and answer, then the re-INVITE's.
	kB, addrB := sdpKey(t, sipMsgBody(t, dgs, sip[2], sip[0], "SIP/2.0 200", "1 INVITE"), -1)
	kGB, addrGB := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[2], "INVITE ", "1 INVITE"), kB.Tag)
	kGB2, addrGB2 := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[2], "INVITE ", "2 INVITE"), kB.Tag)
	kB2, addrB2 := sdpKey(t, sipMsgBody(t, dgs, sip[2], sip[0], "SIP/2.0 200", "2 INVITE"), -1)
	kGA2, addrGA2 := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[1], "SIP/2.0 200", "2 INVITE"), -1)
	if !bytes.Equal(kGA2.Master, kGA.Master) || addrGA2 != addrGA {
		t.Errorf("the answer to the re-INVITE gives the caller another key or address (%s, was %s)", addrGA2, addrGA)
	}
	if !bytes.Equal(kGB2.Master, kGB.Master) || addrGB2 != addrGB {
		t.Errorf("the re-INVITE toward the callee carries another key or address (%s, was %s)", addrGB2, addrGB)
	}
	if !bytes.Equal(kB2.Master, kB.Master) || addrB2 != addrB {
		t.Fatalf("baresip changed its key or address in its answer to the re-INVITE: this test needs it not to")
	}
	keys := []srtpcheck.Key{k1, k2, kGA, kB, kGB}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if bytes.Equal(keys[i].Master, keys[j].Master) {
				t.Errorf("keys %d and %d are the same", i, j)
			}
		}
	}
	others := func(k srtpcheck.Key) [][]srtpcheck.Key {
		var o [][]srtpcheck.Key
		for _, x := range keys {
			if !bytes.Equal(x.Master, k.Master) {
				o = append(o, []srtpcheck.Key{x})
			}
		}
		return o
	}

	// The caller's leg: K1 until the switch, K2 only after it.
	n1, n2 := 0, 0
	for _, p := range legPackets(dgs, media, addrGA) {
		seq := binary.BigEndian.Uint16(p[2:4])
		want := k1
		if seq >= switchSeq {
			want = k2
			n2++
		} else {
			n1++
		}
		if !srtpcheck.OpensWithAny(p, []srtpcheck.Key{want}) || srtpcheck.OpensWithAny(p, others(want)...) {
			t.Fatalf("caller to relay: packet %d does not open with its key only", seq)
		}
	}
	t.Logf("caller to relay: %d packets under K1, %d under K2 (switch at seq %d)", n1, n2, switchSeq)
	if n1 < 50 || n2 < 50 {
		t.Errorf("caller to relay: %d packets under K1, %d under K2; want 50 of each", n1, n2)
	}

	// The callee's side: every packet the caller sent, in order, under
	// the relay's one key toward the callee.
	ctx, err := kGB.Context(srtp.SRTPReplayProtection(1024))
	if err != nil {
		t.Fatal(err)
	}
	next := uint16(callerSeq0)
	for _, p := range legPackets(dgs, addrGB, addrB) {
		if !capture.LooksLikeRTP(p) {
			continue
		}
		segs := [][]byte{p}
		if !srtpcheck.OpensWithAny(p, []srtpcheck.Key{kGB}) {
			if segs = srtpcheck.SplitGSO(p, []srtpcheck.Key{kGB}); segs == nil {
				t.Fatalf("relay to callee: a %d-byte datagram does not open with the relay's key toward the callee", len(p))
			}
		}
		for _, seg := range segs {
			if srtpcheck.OpensWithAny(seg, others(kGB)...) {
				t.Fatalf("relay to callee: a packet opens with another key")
			}
			plain, err := ctx.DecryptRTP(nil, seg, nil)
			if err != nil {
				t.Fatalf("relay to callee: %v", err)
			}
			seq := binary.BigEndian.Uint16(plain[2:4])
			if seq != next {
				t.Fatalf("relay to callee: packet %d after %d (the caller sent %d to %d): lost or reordered across the re-key", seq, next-1, callerSeq0, lastSeq)
			}
			if !bytes.Equal(plain[12:], callerPayload(seq)) {
				t.Fatalf("relay to callee: packet %d's payload differs from what the caller sent", seq)
			}
			next++
		}
	}
	if next != lastSeq+1 {
		t.Errorf("relay to callee: %d of the caller's packets arrived; it sent %d (%d after the switch)", next-callerSeq0, lastSeq+1-callerSeq0, lastSeq+1-switchSeq)
	}

	// The callee's audio toward the caller: its key and the relay's did
	// not change, and what the caller received is what the callee sent,
	// with no gap across the re-INVITE.
	sent := map[uint16]bool{}
	ctxB, err := kB.Context(srtp.SRTPReplayProtection(1024))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range legPackets(dgs, addrB, addrGB) {
		if !capture.LooksLikeRTP(p) {
			continue
		}
		plain, err := ctxB.DecryptRTP(nil, p, nil)
		if err != nil {
			t.Fatalf("callee to relay: a packet does not open with the callee's key: %v", err)
		}
		sent[binary.BigEndian.Uint16(plain[2:4])] = true
	}
	ctxGA, err := kGA.Context(srtp.SRTPReplayProtection(1024))
	if err != nil {
		t.Fatal(err)
	}
	offset, seq0, frames := -1, uint16(0), 0
	var first, prev uint16
	for i, p := range received {
		if srtpcheck.OpensWithAny(p, others(kGA)...) {
			t.Fatalf("relay to caller: a packet opens with another key")
		}
		plain, err := ctxGA.DecryptRTP(nil, p, nil)
		if err != nil {
			t.Fatalf("relay to caller: packet %d does not open with the relay's key toward the caller: %v", i, err)
		}
		seq := binary.BigEndian.Uint16(plain[2:4])
		if !sent[seq] {
			var lo, hi uint16 = 0xffff, 0
			for s := range sent {
				lo, hi = min(lo, s), max(hi, s)
			}
			t.Fatalf("relay to caller: packet %d (the %dth) was not sent by the callee (%d sent, %d to %d)", seq, i, len(sent), lo, hi)
		}
		if i == 0 {
			first = seq
		} else if seq != prev+1 {
			t.Fatalf("relay to caller: packet %d after %d", seq, prev)
		}
		prev = seq
		if checkFrame(t, plain, pcm, &offset, &seq0) {
			frames++
		}
	}
	// Only what the callee sent before the answer reached the relay or
	// after the BYE ended the call may be missing: a handful at each end.
	missing := 0
	for seq := range sent {
		if int16(seq-first) < 0 || int16(seq-prev) > 0 {
			missing++
		}
	}
	if missing > 10 || len(received) == 0 {
		t.Errorf("relay to caller: %d of the callee's %d packets did not arrive", missing, len(sent))
	}
	t.Logf("relay to caller: %d packets (%d to %d), %d frames equal to the WAV file; the callee sent %d", len(received), first, prev, frames, len(sent))
	if frames < 300 {
		t.Errorf("relay to caller: %d frames equal to the WAV file; want 300 (6 s)", frames)
	}
}

// callerSeq0 is the caller's first sequence number.
const callerSeq0 = 1000

// callerPayload is the PCMU payload of the caller's packet seq.
func callerPayload(seq uint16) []byte {
	p := make([]byte, 160)
	for i := range p {
		p[i] = byte(int(seq)*7 + i)
	}
	return p
}

// callerMedia is the caller's media socket (SIPp does only the
// signalling); a goroutine keeps what the relay sends it.
type callerMedia struct {
	conn, rtcp *net.UDPConn
	done       chan struct{}
	got        [][]byte
}

func newCallerMedia(t *testing.T, at netip.AddrPort) *callerMedia {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(at))
	if err != nil {
		t.Fatal(err)
	}
	// The relay's RTCP toward the caller lands here, unread.
	rtcp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(at.Addr(), at.Port()+1)))
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	m := &callerMedia{conn: conn, rtcp: rtcp, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil && capture.LooksLikeRTP(buf[:n]) {
				m.got = append(m.got, append([]byte(nil), buf[:n]...))
			}
		}
	}()
	t.Cleanup(func() { m.stop() })
	return m
}

// stop closes the sockets and returns the RTP packets received.
func (m *callerMedia) stop() [][]byte {
	m.conn.Close()
	m.rtcp.Close()
	<-m.done
	return m.got
}

// send sends the caller's audio toward the relay at to, 50 packets a
// second: under k1 until the file rekeyed appears (SIPp got the 200 OK
// of its re-INVITE), then under k2 for 150 more packets. It returns the
// first sequence number under k2 and the last sent.
func (m *callerMedia) send(t *testing.T, to netip.AddrPort, k1, k2 srtpcheck.Key, rekeyed string) (uint16, uint16) {
	t.Helper()
	c1, err := k1.Context()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := k2.Context()
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	ctx, switchSeq := c1, uint16(0)
	hdr := []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0xca, 0x11, 0xe4, 0x01}
	for seq := uint16(callerSeq0); ; seq++ {
		if switchSeq == 0 && fileExists(rekeyed) {
			ctx, switchSeq = c2, seq
		}
		if switchSeq != 0 && seq-switchSeq == 150 {
			return switchSeq, seq - 1
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer to the re-INVITE after %d packets", seq-callerSeq0)
		}
		binary.BigEndian.PutUint16(hdr[2:4], seq)
		binary.BigEndian.PutUint32(hdr[4:8], 160*uint32(seq))
		ct, err := ctx.EncryptRTP(nil, append(hdr[:12:12], callerPayload(seq)...), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.conn.WriteToUDPAddrPort(ct, to); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
}

// legPackets returns the payloads of the captured datagrams from src to dst.
func legPackets(dgs []capture.Datagram, src, dst netip.AddrPort) [][]byte {
	var out [][]byte
	for _, d := range dgs {
		if sameHostPort(d.Src, src) && sameHostPort(d.Dst, dst) {
			out = append(out, d.Payload)
		}
	}
	return out
}

// findSIPBody returns the SDP body of the first SIP message from src to
// dst whose first line starts with start and whose CSeq is cseq, or nil.
func findSIPBody(dgs []capture.Datagram, src, dst netip.AddrPort, start, cseq string) []byte {
	for _, d := range dgs {
		if !sameHostPort(d.Src, src) || !sameHostPort(d.Dst, dst) || !bytes.HasPrefix(d.Payload, []byte(start)) {
			continue
		}
		head, body, ok := bytes.Cut(d.Payload, []byte("\r\n\r\n"))
		if !ok || len(body) == 0 || !bytes.Contains(head, []byte("\r\nCSeq: "+cseq)) {
			continue
		}
		return body
	}
	return nil
}

func sipMsgBody(t *testing.T, dgs []capture.Datagram, src, dst netip.AddrPort, start, cseq string) []byte {
	t.Helper()
	b := findSIPBody(dgs, src, dst, start, cseq)
	if b == nil {
		t.Fatalf("no %q (CSeq %s) with SDP from %s to %s in the capture", start, cseq, src, dst)
	}
	return b
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// reinviteScenario is the SIPp caller's scenario: an INVITE offering k1
// to bob at callee through the proxy SIPp is pointed at, the ACK along
// the route set, 3 seconds of call, a re-INVITE offering k2 with the
// same address, 5 seconds more, then the BYE. The files answered and
// rekeyed in dir appear when the 200 OKs arrive.
func reinviteScenario(dir string, callee, media netip.AddrPort, k1, k2 srtpcheck.Key) string {
	sdp := func(version int, k srtpcheck.Key) string {
		return strings.Join([]string{"v=0",
			fmt.Sprintf("o=alice 4242 %d IN IP4 %s", version, media.Addr()),
			"s=-",
			"c=IN IP4 " + media.Addr().String(),
			"t=0 0",
			fmt.Sprintf("m=audio %d RTP/SAVP 0", media.Port()),
			"a=rtpmap:0 PCMU/8000",
			k.CryptoLine(),
			"a=ptime:20",
			"a=sendrecv", ""}, "\n")
	}
	invite := func(uri string, cseq int, to string, k srtpcheck.Key) string {
		return fmt.Sprintf(`INVITE %s SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
%sFrom: <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: %s
Call-ID: [call_id]
CSeq: %d INVITE
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

%s`, uri, routes(cseq), to, cseq, sdp(cseq, k))
	}
	inDialog := func(method string, cseq int) string {
		return fmt.Sprintf(`%s [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:alice@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: <sip:bob@%s>[peer_tag_param]
Call-ID: [call_id]
CSeq: %d %s
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

`, method, callee, cseq, method)
	}
	to := fmt.Sprintf("<sip:bob@%s>", callee)
	return fmt.Sprintf(`<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="re-INVITE with a new key">
<send retrans="500"><![CDATA[
%s]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="183" optional="true"/>
<recv response="200" rrs="true"><action><exec command="touch %s"/></action></recv>
<send><![CDATA[
%s]]></send>
<pause milliseconds="3000"/>
<send retrans="500"><![CDATA[
%s]]></send>
<recv response="100" optional="true"/>
<recv response="200"><action><exec command="touch %s"/></action></recv>
<send><![CDATA[
%s]]></send>
<pause milliseconds="5000"/>
<send retrans="500"><![CDATA[
%s]]></send>
<recv response="200"/>
</scenario>
`, invite(fmt.Sprintf("sip:bob@%s", callee), 1, to, k1), filepath.Join(dir, "answered"),
		inDialog("ACK", 1),
		invite("[next_url]", 2, to+"[peer_tag_param]", k2), filepath.Join(dir, "rekeyed"),
		inDialog("ACK", 2),
		inDialog("BYE", 3))
}

// routes is the Route header set of an in-dialog request (none on the
// first INVITE).
func routes(cseq int) string {
	if cseq == 1 {
		return ""
	}
	return "[routes]\n"
}
