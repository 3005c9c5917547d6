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
	"slices"
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
// caller (docs/ng.md: the gateway's keys toward both sides stay). The
// same call through rtpengine (userspace) runs as the reference: its
// figures are logged, not held to mediaedge's keys.
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
	// 100-101, the callee's 150-189, SIP 190-194, rtpengine's ng 197.
	base := 24000 + 200*(os.Getpid()%20)
	t.Run("mediaedge", func(t *testing.T) {
		cfg := ngConfig()
		cfg.Internal.Ports = config.PortRange{Min: uint16(base), Max: uint16(base + 49)}
		cfg.Cloud.Ports = config.PortRange{Min: uint16(base + 50), Max: uint16(base + 99)}
		cfg.Internal.Suites = []string{"AES_CM_128_HMAC_SHA1_80"}
		cfg.Cloud.Suites = []string{"AES_CM_128_HMAC_SHA1_32"}
		g := startGateway(t, cfg)
		runReInvite(t, base, g.NGAddr(), true, func() {
			testutil.WaitFor(t, "the call and its session to go after the BYE", 10*time.Second, func() bool {
				return len(mustSessions(t, g)) == 0 && numCalls(t, g.NGAddr()) == 0
			})
		})
	})
	t.Run("rtpengine", func(t *testing.T) {
		if _, err := exec.LookPath("rtpengine"); err != nil {
			t.Skip("rtpengine is not installed (Debian package rtpengine-daemon)")
		}
		ngAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(base+197))
		startProc(t, t.TempDir(), "rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
			"--interface=127.0.0.1", "--listen-ng="+ngAddr.String(), fmt.Sprintf("--port-min=%d", base), fmt.Sprintf("--port-max=%d", base+99),
			"--delete-delay=0")
		testutil.WaitFor(t, "the ng listener to answer ping", 10*time.Second, func() bool { return ngPing(ngAddr) })
		runReInvite(t, base, ngAddr, false, func() { time.Sleep(500 * time.Millisecond) })
	})
}

// runReInvite runs the call of TestNGKamailioReInviteReKeys against the ng
// server at ngAddr; after runs once SIPp has hung up. strict holds the
// relay to mediaedge's contract (its keys, no loss); otherwise the
// figures are logged.
func runReInvite(t *testing.T, base int, ngAddr netip.AddrPort, strict bool, after func()) {
	dir := t.TempDir()
	lo := netip.MustParseAddr("127.0.0.1")
	media := netip.AddrPortFrom(lo, uint16(base+100))
	// kamailio, caller (SIPp), callee (baresip)
	sip := [3]netip.AddrPort{netip.AddrPortFrom(lo, uint16(base+190)), netip.AddrPortFrom(lo, uint16(base+192)), netip.AddrPortFrom(lo, uint16(base+194))}
	wav := filepath.Join(dir, "in.wav")
	pcm := writeULawWAV(t, wav, 8000*12)
	// check fails a strict run and is a log line in a reference run.
	check := t.Errorf
	if !strict {
		check = t.Logf
	}

	kam := startProc(t, dir, "kamailio", "-f", "../../gateway/testdata/kamailio.cfg", "-DD", "-E", "-Y", dir,
		"-A", "LISTEN=udp:"+sip[0].String(), "-A", fmt.Sprintf("NGSOCK=\"udp:%s\"", ngAddr))
	testutil.WaitFor(t, "Kamailio's rtpengine module to start", 15*time.Second, func() bool { return strings.Contains(kam.out(), "support for it enabled") })
	pcap := filepath.Join(dir, "call.pcap")
	// A 32 MiB buffer: a busy machine drops no packet of the capture
	// (the 2 MiB default dropped some at load 10); immediate mode: with
	// the default buffering the last block (up to a second of packets)
	// is lost when tcpdump is stopped.
	dump := startProc(t, dir, "tcpdump", "-i", "lo", "-B", "32768", "-U", "--immediate-mode", "-w", pcap, fmt.Sprintf("udp and portrange %d-%d", base, base+199))
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

	// The caller's media starts with the 200 OK: the relay's address and
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
	after()
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
	kB2, addrB2 := sdpKey(t, sipMsgBody(t, dgs, sip[2], sip[0], "SIP/2.0 200", "2 INVITE"), -1)
	kGB2, addrGB2 := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[2], "INVITE ", "2 INVITE"), kB2.Tag)
	kGA2, addrGA2 := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[1], "SIP/2.0 200", "2 INVITE"), -1)
	if !bytes.Equal(kGA2.Master, kGA.Master) || addrGA2 != addrGA {
		check("the answer to the re-INVITE gives the caller another key or address (%s, was %s)", addrGA2, addrGA)
	}
	if !bytes.Equal(kGB2.Master, kGB.Master) || addrGB2 != addrGB {
		check("the re-INVITE toward the callee carries another key or address (%s, was %s); the callee's new key: %v",
			addrGB2, addrGB, !bytes.Equal(kB2.Master, kB.Master))
	}
	if strict && (!bytes.Equal(kB2.Master, kB.Master) || addrB2 != addrB) {
		t.Fatalf("baresip changed its key or address in its answer to the re-INVITE: this test needs it not to")
	}
	keys := []srtpcheck.Key{k1, k2, kGA, kB, kGB}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if bytes.Equal(keys[i].Master, keys[j].Master) {
				check("keys %d and %d are the same", i, j)
			}
		}
	}
	others := func(k ...srtpcheck.Key) [][]srtpcheck.Key {
		var o [][]srtpcheck.Key
		for _, x := range keys {
			if !slices.ContainsFunc(k, func(k srtpcheck.Key) bool { return bytes.Equal(x.Master, k.Master) }) {
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
	// the relay's one key toward the callee (a reference relay may switch
	// to the key of its re-INVITE).
	toCallee := openLeg(t, legPackets(dgs, addrGB, addrB), kGB, kGB2)
	if strict && toCallee.foreign(others(kGB)) {
		t.Errorf("relay to callee: a packet opens with another leg's key")
	}
	next, bad := uint16(callerSeq0), 0
	for _, p := range toCallee.plain {
		seq := binary.BigEndian.Uint16(p[2:4])
		if seq != next || !bytes.Equal(p[12:], callerPayload(seq)) {
			bad++
			check("relay to callee: packet %d after %d (the caller sent %d to %d): lost, changed or reordered across the re-key", seq, next-1, callerSeq0, lastSeq)
		}
		next = seq + 1
	}
	t.Logf("relay to callee: %d of the caller's %d packets (%d after the switch), %d out of place, %d that open with neither of the relay's keys",
		len(toCallee.plain), lastSeq+1-callerSeq0, lastSeq+1-switchSeq, bad, toCallee.unopened)
	if len(toCallee.plain) != int(lastSeq+1-callerSeq0) || toCallee.unopened > 0 {
		got := map[uint16]bool{}
		for _, p := range toCallee.plain {
			got[binary.BigEndian.Uint16(p[2:4])] = true
		}
		var lost []uint16
		for seq := uint16(callerSeq0); seq <= lastSeq; seq++ {
			if !got[seq] {
				lost = append(lost, seq)
			}
		}
		check("relay to callee: %d of the caller's %d packets arrived; missing %v", len(toCallee.plain), lastSeq+1-callerSeq0, lost)
	}

	// The callee's audio toward the caller: what the caller received is
	// what the callee sent, with no gap across the re-INVITE.
	sent := map[uint16]bool{}
	for _, p := range openLeg(t, legPackets(dgs, addrB, addrGB), kB, kB2).plain {
		sent[binary.BigEndian.Uint16(p[2:4])] = true
	}
	toCaller := openLeg(t, received, kGA, kGA2)
	if strict && toCaller.foreign(others(kGA)) {
		t.Errorf("relay to caller: a packet opens with another leg's key")
	}
	offset, seq0, frames := -1, uint16(0), 0
	var first, prev uint16
	for i, plain := range toCaller.plain {
		seq := binary.BigEndian.Uint16(plain[2:4])
		if !sent[seq] {
			check("relay to caller: packet %d was not sent by the callee", seq)
		}
		if i == 0 {
			first = seq
		} else if seq != prev+1 {
			check("relay to caller: packet %d after %d", seq, prev)
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
	t.Logf("relay to caller: %d packets (%d to %d), %d frames equal to the WAV file, %d that open with neither of the relay's keys; the callee sent %d",
		len(toCaller.plain), first, prev, frames, toCaller.unopened, len(sent))
	if missing > 10 || len(received) == 0 || toCaller.unopened > 0 {
		check("relay to caller: %d of the callee's %d packets did not arrive, %d did not open", missing, len(sent), toCaller.unopened)
	}
	if frames < 300 {
		check("relay to caller: %d frames equal to the WAV file; want 300 (6 s)", frames)
	}
}

// openedLeg is what opened of one leg's packets.
type openedLeg struct {
	raw      [][]byte // the SRTP packets (GSO messages split) that opened
	plain    [][]byte
	unopened int
}

// openLeg decrypts a leg's packets in order with its key, or from the
// first packet that needs it on, with its key after a re-INVITE. A
// message sent with UDP GSO (the capture on loopback holds it whole) is
// split first.
func openLeg(t *testing.T, pkts [][]byte, key, next srtpcheck.Key) openedLeg {
	t.Helper()
	var out openedLeg
	var ctxs []*srtp.Context
	for _, k := range []srtpcheck.Key{key, next} {
		c, err := k.Context(srtp.SRTPReplayProtection(1024))
		if err != nil {
			t.Fatal(err)
		}
		ctxs = append(ctxs, c)
	}
	for _, p := range pkts {
		if !capture.LooksLikeRTP(p) {
			continue
		}
		segs := [][]byte{p}
		if !srtpcheck.OpensWithAny(p, []srtpcheck.Key{key}, []srtpcheck.Key{next}) {
			if segs = srtpcheck.SplitGSO(p, []srtpcheck.Key{key}, []srtpcheck.Key{next}); segs == nil {
				out.unopened++
				continue
			}
		}
		for _, seg := range segs {
			var plain []byte
			for _, c := range ctxs {
				if pl, err := c.DecryptRTP(nil, seg, nil); err == nil {
					plain = pl
					break
				}
			}
			if plain == nil {
				out.unopened++
				continue
			}
			out.raw = append(out.raw, seg)
			out.plain = append(out.plain, plain)
		}
	}
	return out
}

// foreign reports whether a packet of the leg opens with one of others.
func (o openedLeg) foreign(others [][]srtpcheck.Key) bool {
	for _, p := range o.raw {
		if srtpcheck.OpensWithAny(p, others...) {
			return true
		}
	}
	return false
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
// dst whose first line starts with start and whose CSeq is cseq ("2
// INVITE"; a method alone matches any number), or nil.
func findSIPBody(dgs []capture.Datagram, src, dst netip.AddrPort, start, cseq string) []byte {
	for _, d := range dgs {
		if !sameHostPort(d.Src, src) || !sameHostPort(d.Dst, dst) || !bytes.HasPrefix(d.Payload, []byte(start)) {
			continue
		}
		head, body, ok := bytes.Cut(d.Payload, []byte("\r\n\r\n"))
		if !ok || len(body) == 0 {
			continue
		}
		_, v, _ := bytes.Cut(head, []byte("\r\nCSeq: "))
		v, _, _ = bytes.Cut(v, []byte("\r\n"))
		if string(v) == cseq || (!strings.Contains(cseq, " ") && bytes.HasSuffix(v, []byte(" "+cseq))) {
			return body
		}
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
