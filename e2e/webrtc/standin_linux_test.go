package webrtc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	pwebrtc "github.com/pion/webrtc/v4"
)

// standIn plays the gateway with pion/webrtc, to prove the harness (page,
// browser, tone detection, ffmpeg) on its own: it answers the browser's
// offer as a WebRTC peer (ICE, DTLS-SRTP), and bridges its audio to the
// SDES peer as SRTP under keys of its own, the way mediaedge re-keys
// between legs. The test owns it; it stops when the test ends.
type standIn struct {
	t      testing.TB
	pc     *pwebrtc.PeerConnection
	sip    *net.UDPConn // the SDES leg's socket
	peer   netip.AddrPort
	toPeer *srtp.Context // under the key given to the SDES receiver; owned by the OnTrack goroutine
	track  *pwebrtc.TrackLocalStaticRTP
	Answer string

	toSDES, toBrowser, decryptFailed atomic.Int64

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// newStandIn answers offer and bridges the call to the SDES peer at peer:
// toPeer keys what it sends there, fromPeer opens what comes back.
func newStandIn(t testing.TB, offer string, peer netip.AddrPort, toPeer, fromPeer sdesKey) *standIn {
	t.Helper()
	s := &standIn{t: t, peer: peer}
	var err error
	if s.toPeer, err = srtp.CreateContext(toPeer.Key, toPeer.Salt, srtp.ProtectionProfileAes128CmHmacSha1_80); err != nil {
		t.Fatal(err)
	}
	rx, err := srtp.CreateContext(fromPeer.Key, fromPeer.Salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	if err != nil {
		t.Fatal(err)
	}
	if s.sip, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}

	m := &pwebrtc.MediaEngine{}
	if err := m.RegisterCodec(pwebrtc.RTPCodecParameters{
		RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: pcmuRate, Channels: 1},
		PayloadType:        0,
	}, pwebrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	var se pwebrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := pwebrtc.NewAPI(pwebrtc.WithMediaEngine(m), pwebrtc.WithSettingEngine(se))
	if s.pc, err = api.NewPeerConnection(pwebrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	if s.track, err = pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: pcmuRate},
		"audio", "sdes-peer"); err != nil {
		t.Fatal(err)
	}
	sender, err := s.pc.AddTrack(s.track)
	if err != nil {
		t.Fatal(err)
	}
	s.pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		s.goLocked(func() { s.bridgeToPeer(tr) })
	})
	if err := s.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatalf("stand-in: the browser's offer: %v", err)
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pwebrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		t.Fatal("stand-in: ICE gathering did not complete within 10 s")
	}
	s.Answer = s.pc.LocalDescription().SDP
	s.goLocked(func() { s.drainRTCP(sender) })
	s.goLocked(func() { s.bridgeFromPeer(rx) })
	return s
}

// goLocked starts f on a goroutine the stand-in waits for, unless it is
// closed already (pion calls OnTrack on its own goroutines).
func (s *standIn) goLocked(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// SIPAddr is the address of the stand-in's SDES leg.
func (s *standIn) SIPAddr() netip.AddrPort { return s.sip.LocalAddr().(*net.UDPAddr).AddrPort() }

// bridgeToPeer re-encrypts the browser's RTP toward the SDES peer.
func (s *standIn) bridgeToPeer(tr *pwebrtc.TrackRemote) {
	var out []byte
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return // io.EOF once the peer connection closes
		}
		raw, err := pkt.Marshal()
		if err != nil {
			continue
		}
		if out, err = s.toPeer.EncryptRTP(out[:0], raw, &pkt.Header); err != nil {
			continue
		}
		if _, err := s.sip.WriteToUDPAddrPort(out, s.peer); err == nil {
			s.toSDES.Add(1)
		}
	}
}

// bridgeFromPeer opens the SDES peer's SRTP and plays it to the browser.
func (s *standIn) bridgeFromPeer(rx *srtp.Context) {
	buf := make([]byte, 1500)
	var plain []byte
	var h rtp.Header
	for {
		n, _, err := s.sip.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // net.ErrClosed
		}
		if plain, err = rx.DecryptRTP(plain[:0], buf[:n], &h); err != nil {
			s.decryptFailed.Add(1)
			continue
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(plain) != nil {
			continue
		}
		if err := s.track.WriteRTP(&pkt); err == nil {
			s.toBrowser.Add(1)
		}
	}
}

// drainRTCP reads the browser's RTCP, as pion asks of every sender.
func (s *standIn) drainRTCP(sender *pwebrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := sender.Read(buf); err != nil {
			return
		}
	}
}

func (s *standIn) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if err := s.pc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.t.Logf("stand-in: closing the peer connection: %v", err)
	}
	s.sip.Close()
	s.wg.Wait()
}

// String reports the bridge's counters.
func (s *standIn) String() string {
	return fmt.Sprintf("stand-in: to SDES %d, to browser %d, SRTP from SDES that did not open %d",
		s.toSDES.Load(), s.toBrowser.Load(), s.decryptFailed.Load())
}
