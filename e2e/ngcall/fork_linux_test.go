package ngcall

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNGKamailioForkedAnswers: Kamailio (testdata/kamailio.cfg plus one
// append_branch) forks a baresip caller's INVITE, after one
// rtpengine_offer, to two callees played by SIPp. Carol answers at once
// with a 183 and early media SDP (her own key), Bob a second later with
// the 200 (his own key); Kamailio hands mediaedge both answers, with
// two to-tags, and cancels Carol. The test is Bob's media. Proven from a
// capture: both answers reached the caller carrying mediaedge's same
// address and key; after the 200, the caller's audio reaches Bob under
// mediaedge's key toward the callees, frame by frame as the WAV file,
// and every packet Bob sent reaches the caller under mediaedge's key
// toward it; the caller's BYE ends the call.
func TestNGKamailioForkedAnswers(t *testing.T) {
	for _, tool := range []string{"kamailio", "baresip", "sipp", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages kamailio, baresip, sip-tester, tcpdump)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("capturing on loopback with tcpdump needs root")
	}
	// The block of TestNGKamailioBaresipCall: relay 0-99, the caller's
	// media 100-139, Bob's 150-151, Carol's 170-171, SIP 190-196.
	base := 24000 + 200*(os.Getpid()%20)
	cfg := ngConfig()
	cfg.Internal.Ports = config.PortRange{Min: uint16(base), Max: uint16(base + 49)}
	cfg.Cloud.Ports = config.PortRange{Min: uint16(base + 50), Max: uint16(base + 99)}
	cfg.Internal.Suites = []string{"AES_CM_128_HMAC_SHA1_80"}
	cfg.Cloud.Suites = []string{"AES_CM_128_HMAC_SHA1_32"}
	g := startGateway(t, cfg)

	dir := t.TempDir()
	lo := netip.MustParseAddr("127.0.0.1")
	bobMedia, carolMedia := netip.AddrPortFrom(lo, uint16(base+150)), netip.AddrPortFrom(lo, uint16(base+170))
	// kamailio, caller (baresip), Bob, Carol (SIPp)
	sip := [4]netip.AddrPort{netip.AddrPortFrom(lo, uint16(base+190)), netip.AddrPortFrom(lo, uint16(base+192)),
		netip.AddrPortFrom(lo, uint16(base+194)), netip.AddrPortFrom(lo, uint16(base+196))}
	wav := filepath.Join(dir, "in.wav")
	pcm := writeULawWAV(t, wav, 8000*12)

	// The documented configuration, forking every new INVITE to Carol too.
	doc, err := os.ReadFile("../../gateway/testdata/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	relay := "\tt_on_reply(\"MEDIA\");\n\tt_on_failure(\"FAILED\");"
	if !bytes.Contains(doc, []byte(relay)) {
		t.Fatal("testdata/kamailio.cfg no longer has the lines this test adds a branch before")
	}
	forked := bytes.Replace(doc, []byte(relay), []byte(fmt.Sprintf("\tappend_branch(\"sip:carol@%s\");\n%s", sip[3], relay)), 1)
	forked = bytes.Replace(forked, []byte("loadmodule \"tm.so\"\n"), []byte("loadmodule \"tm.so\"\nloadmodule \"corex.so\"\n"), 1)
	kamCfg := filepath.Join(dir, "kamailio-fork.cfg")
	if err := os.WriteFile(kamCfg, forked, 0o644); err != nil {
		t.Fatal(err)
	}
	kam := startProc(t, dir, "kamailio", "-f", kamCfg, "-DD", "-E", "-Y", dir,
		"-A", "LISTEN=udp:"+sip[0].String(), "-A", fmt.Sprintf("NGSOCK=\"udp:%s\"", g.NGAddr()))
	testutil.WaitFor(t, "Kamailio's rtpengine module to start", 15*time.Second, func() bool { return strings.Contains(kam.out(), "support for it enabled") })
	pcap := filepath.Join(dir, "call.pcap")
	dump := startProc(t, dir, "tcpdump", "-i", "lo", "-B", "32768", "-U", "--immediate-mode", "-w", pcap, fmt.Sprintf("udp and portrange %d-%d", base, base+199))
	testutil.WaitFor(t, "tcpdump to listen", 10*time.Second, func() bool { return strings.Contains(dump.out(), "listening on") })

	su, err := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_32")
	if err != nil {
		t.Fatal(err)
	}
	kBob, err := srtpcheck.NewKey(su)
	if err != nil {
		t.Fatal(err)
	}
	kCarol, err := srtpcheck.NewKey(su)
	if err != nil {
		t.Fatal(err)
	}
	m := newCallerMedia(t, bobMedia)
	for name, sc := range map[string]string{"bob.xml": calleeScenario(dir, bobMedia, kBob), "carol.xml": earlyScenario(carolMedia, kCarol)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bob := startProc(t, dir, "sipp", "-sf", filepath.Join(dir, "bob.xml"), "-i", "127.0.0.1", "-p", fmt.Sprint(sip[2].Port()), "-m", "1",
		"-nostdin", "-timeout", "40s", "-timeout_error")
	carol := startProc(t, dir, "sipp", "-sf", filepath.Join(dir, "carol.xml"), "-i", "127.0.0.1", "-p", fmt.Sprint(sip[3].Port()), "-m", "1",
		"-nostdin", "-timeout", "40s", "-timeout_error")

	caller := filepath.Join(dir, "caller")
	if err := os.MkdirAll(caller, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := strings.Join([]string{
		"poll_method epoll",
		"sip_listen " + sip[1].String(),
		"net_interface 127.0.0.1",
		"audio_player aubridge,nowhere",
		"audio_alert aubridge,nowhere",
		"audio_source aufile," + wav,
		fmt.Sprintf("rtp_ports %d-%d", base+100, base+139),
		"module_path /usr/lib/baresip/modules",
		"module g711.so", "module aufile.so", "module aubridge.so", "module srtp.so",
		"module_app account.so", "module_app menu.so", ""}, "\n")
	account := fmt.Sprintf("<sip:alice@%s>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU;outbound=\"sip:%s\"\n", sip[1], sip[0])
	if err := os.WriteFile(filepath.Join(caller, "config"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caller, "accounts"), []byte(account), 0o644); err != nil {
		t.Fatal(err)
	}
	// The caller hangs up (BYE) when it quits after 7 seconds.
	a := startProc(t, dir, "baresip", "-f", caller, "-t", "7", "-e", fmt.Sprintf("/dial sip:bob@%s", sip[2]))

	// Bob's media starts once the caller has his 200 OK: by then
	// Kamailio has handed mediaedge his answer.
	var toBob []byte
	testutil.WaitFor(t, "Bob's 200 OK to reach the caller", 15*time.Second, func() bool {
		dgs, _, err := capture.ReadCaptureFile(pcap)
		if err != nil {
			return false // tcpdump may be halfway through a record
		}
		toBob = findSIPBody(dgs, sip[0], sip[2], "INVITE ", "INVITE")
		return toBob != nil && findSIPBody(dgs, sip[0], sip[1], "SIP/2.0 200", "INVITE") != nil
	})
	kGB, addrGB := sdpKey(t, toBob, 1)
	lastSeq := m.sendN(t, addrGB, kBob, 150)
	if err := a.wait(20 * time.Second); err != nil {
		t.Fatalf("caller: %v", err)
	}
	testutil.WaitFor(t, "the call and its session to go after the BYE", 10*time.Second, func() bool {
		return len(mustSessions(t, g)) == 0 && numCalls(t, g.NGAddr()) == 0
	})
	for name, p := range map[string]*proc{"Bob": bob, "Carol": carol} {
		if err := p.wait(10 * time.Second); err != nil {
			t.Errorf("%s (SIPp): %v\n%s", name, err, tail(p.out(), 2000))
		}
	}
	received := m.stop()
	time.Sleep(300 * time.Millisecond)
	dump.stop()

	dgs, _, err := capture.ReadCaptureFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	kA, addrA := sdpKey(t, sipMsgBody(t, dgs, sip[1], sip[0], "INVITE ", "INVITE"), -1)
	kGA183, addrGA183 := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[1], "SIP/2.0 183", "INVITE"), -1)
	kGA, addrGA := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[1], "SIP/2.0 200", "INVITE"), -1)
	kGC, addrGC := sdpKey(t, sipMsgBody(t, dgs, sip[0], sip[3], "INVITE ", "INVITE"), 1)
	if !bytes.Equal(kGA183.Master, kGA.Master) || addrGA183 != addrGA {
		t.Errorf("the caller got %s in the 183 and %s in the 200, or two keys; want the same", addrGA183, addrGA)
	}
	if !bytes.Equal(kGC.Master, kGB.Master) || addrGC != addrGB {
		t.Errorf("Bob and Carol were offered different ports or keys (%s, %s): the INVITE was offered twice", addrGB, addrGC)
	}
	keys := []srtpcheck.Key{kA, kGA, kGB, kBob, kCarol}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if bytes.Equal(keys[i].Master, keys[j].Master) {
				t.Errorf("keys %d and %d are the same", i, j)
			}
		}
	}

	// The caller's audio at Bob's socket: the WAV file, frame by frame,
	// under mediaedge's key toward the callees.
	toB := openLeg(t, received, kGB, kGB)
	offset, seq0, frames := -1, uint16(0), 0
	for _, plain := range toB.plain {
		if checkFrame(t, plain, pcm, &offset, &seq0) {
			frames++
		}
	}
	t.Logf("relay to Bob: %d packets, %d frames equal to the WAV file, %d that do not open", len(toB.plain), frames, toB.unopened)
	if frames < 150 || toB.unopened > 0 {
		t.Errorf("relay to Bob: %d frames equal to the WAV file, %d packets that do not open; want 150 frames and none", frames, toB.unopened)
	}
	// Bob's media at the caller: every packet he sent.
	toA := openLeg(t, legPackets(dgs, addrGA, addrA), kGA, kGA)
	got := map[uint16]bool{}
	for _, p := range toA.plain {
		if seq := binary.BigEndian.Uint16(p[2:4]); bytes.Equal(p[12:], callerPayload(seq)) {
			got[seq] = true
		}
	}
	t.Logf("relay to caller: %d of Bob's %d packets", len(got), lastSeq+1-callerSeq0)
	if len(got) != int(lastSeq+1-callerSeq0) || toA.unopened > 0 {
		t.Errorf("relay to caller: %d of Bob's %d packets arrived, %d packets did not open", len(got), lastSeq+1-callerSeq0, toA.unopened)
	}
}

// sendN sends n packets of audio toward to under key, 50 a second, and
// returns the last sequence number.
func (m *callerMedia) sendN(t *testing.T, to netip.AddrPort, key srtpcheck.Key, n int) uint16 {
	t.Helper()
	ctx, err := key.Context()
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	hdr := []byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0xb0, 0xb0, 0xb0, 0x01}
	seq := uint16(callerSeq0)
	for i := 0; i < n; i, seq = i+1, seq+1 {
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
	return seq - 1
}

// calleeSDP is a callee's answer: PCMU at media with key (tag 1).
func calleeSDP(media netip.AddrPort, k srtpcheck.Key) string {
	return strings.Join([]string{"v=0",
		fmt.Sprintf("o=callee 77 1 IN IP4 %s", media.Addr()),
		"s=-",
		"c=IN IP4 " + media.Addr().String(),
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/SAVP 0", media.Port()),
		"a=rtpmap:0 PCMU/8000",
		k.CryptoLine(),
		"a=ptime:20",
		"a=sendrecv", ""}, "\n")
}

// uasReply is a SIPp reply to the last request received.
func uasReply(status string, body string) string {
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\n"
	}
	return fmt.Sprintf(`SIP/2.0 %s
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:callee@[local_ip]:[local_port]>
%sContent-Length: [len]

%s`, status, ct, body)
}

// calleeScenario is Bob's: ringing, the 200 OK a second later with his
// key, then the caller's BYE.
func calleeScenario(dir string, media netip.AddrPort, k srtpcheck.Key) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="callee answering after a second">
<recv request="INVITE" rrs="true"/>
<send><![CDATA[
%s]]></send>
<pause milliseconds="1000"/>
<send retrans="500"><![CDATA[
%s]]></send>
<recv request="ACK"/>
<recv request="BYE"/>
<send><![CDATA[
%s]]></send>
</scenario>
`, uasReply("180 Ringing", ""), uasReply("200 OK", calleeSDP(media, k)), uasReply("200 OK", ""))
}

// earlyScenario is Carol's: a 183 with her key at once, then the
// proxy's CANCEL: 200 for it, 487 for the INVITE.
func earlyScenario(media netip.AddrPort, k srtpcheck.Key) string {
	return fmt.Sprintf(`<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="callee with early media, cancelled">
<recv request="INVITE" rrs="true">
  <action><ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="csn"/></action>
</recv>
<send><![CDATA[
%s]]></send>
<recv request="CANCEL"/>
<send><![CDATA[
%s]]></send>
<send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [$csn] INVITE
Content-Length: 0

]]></send>
<recv request="ACK"/>
</scenario>
`, uasReply("183 Session Progress", calleeSDP(media, k)), uasReply("200 OK", ""))
}
