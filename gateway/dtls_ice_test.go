package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// iceCheck sends a connectivity check with USE-CANDIDATE from p to a
// DTLS leg (the ICE-lite side), with the leg's ufrag and password.
func (p *dtlsPeer) iceCheck(t *testing.T, li *LegInfo, pwd string) {
	t.Helper()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername(li.DTLS.ICE.Ufrag+":peer"),
		rawAttr(stun.AttrICEControlling, make([]byte, 8)), rawAttr(stun.AttrUseCandidate, nil),
		stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if _, err := p.conn.WriteToUDP(req.Raw, udpAddr(t, li.Local)); err != nil {
		t.Fatal(err)
	}
}

// TestDTLSNeedsICECheck: on an ICE-lite DTLS leg without a remote, DTLS
// from a source that never passed a connectivity check is dropped
// (wrong_source), so that no one can take over the handshake before the
// peer's nomination; after the peer's check the handshake completes and
// media flows.
func TestDTLSNeedsICECheck(t *testing.T) {
	g := startGateway(t, testConfig())
	web := newDTLSPeer(t)
	sip := newPeer(t)
	key := newKeyLine(t, suiteAES128SHA80)
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, Setup: "active", Fingerprint: web.cert.fp.String()},
		Cloud:    LegRequest{Remote: sip.addr(), RTCPMux: true, Crypto: key},
	})
	ice := info.Internal.DTLS.ICE
	if ice == nil || ice.Ufrag == "" || ice.Pwd == "" || len(ice.Candidates) != 1 {
		t.Fatalf("ICE in the create answer: %+v", ice)
	}
	if _, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 300 * time.Millisecond}); err == nil {
		t.Fatal("a handshake completed without a connectivity check")
	}
	if c := mustShow(t, g, info.ID).Internal.Counters; c.WrongSource == 0 {
		t.Fatal("DTLS from an unchecked source was not counted")
	}
	web.conns = nil
	web.iceCheck(t, &info.Internal, ice.Pwd+"x") // a wrong password: no latch
	web.iceCheck(t, &info.Internal, ice.Pwd)
	waitCount(t, "latched", func() float64 {
		if mustShow(t, g, info.ID).Internal.Latched {
			return 1
		}
		return 0
	}, 1)
	conn, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{})
	if err != nil {
		t.Fatalf("handshake after the check: %v", err)
	}
	waitDTLS(t, g, info.ID, true, DTLSStateConnected)
	out, _ := srtpContexts(t, conn, true)
	plain := rtpPacket(t, 0x4444, 1, 100)
	web.conn.WriteToUDP(encRTP(t, out, plain), udpAddr(t, info.Internal.Local))
	mustRecvRTP(t, sip, contextFor(t, info.Cloud.Crypto, true), plain)
	if li := mustShow(t, g, info.ID).Internal; li.DTLS.ICE == nil || li.DTLS.ICE.Pwd != "" {
		t.Fatalf("session info shows ICE %+v: want the ufrag, no password", li.DTLS.ICE)
	}
}

// TestDTLSICERestart: an update with ice_restart answers with new ICE
// credentials and keeps the DTLS association (browsers keep theirs);
// checks with the old credentials are refused, the new ones latch, and
// when the peer starts a new association anyway (a ClientHello with a
// new random on the connected leg) a new handshake keys the leg.
func TestDTLSICERestart(t *testing.T) {
	g := startGateway(t, testConfig())
	web := newDTLSPeer(t)
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, Setup: "active", Fingerprint: web.cert.fp.String()},
		Cloud:    LegRequest{RTCPMux: true, Crypto: benchKeyLine},
	})
	web.iceCheck(t, &info.Internal, info.Internal.DTLS.ICE.Pwd)
	if _, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{}); err != nil {
		t.Fatal(err)
	}
	waitDTLS(t, g, info.ID, true, DTLSStateConnected)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	up, err := g.Update(ctx, info.ID, UpdateRequest{Internal: &LegUpdate{ICERestart: true}})
	if err != nil {
		t.Fatal(err)
	}
	ice := up.Internal.DTLS.ICE
	if ice == nil || ice.Pwd == "" || ice.Ufrag == info.Internal.DTLS.ICE.Ufrag {
		t.Fatalf("ICE after the restart: %+v", ice)
	}
	if up.Internal.DTLS.State != DTLSStateConnected || up.Internal.DTLS.Handshakes != 1 {
		t.Fatalf("after the restart: state %s, %d handshakes; want the association kept", up.Internal.DTLS.State, up.Internal.DTLS.Handshakes)
	}
	before := mustShow(t, g, info.ID).Internal.Counters.AuthFailures
	web.iceCheck(t, &info.Internal, info.Internal.DTLS.ICE.Pwd) // old ufrag and password
	waitCount(t, "refused old check", func() float64 {
		return float64(mustShow(t, g, info.ID).Internal.Counters.AuthFailures - before)
	}, 1)
	for _, c := range web.conns {
		_ = c.Close()
	}
	web.conns = nil
	web.iceCheck(t, &up.Internal, ice.Pwd)
	if _, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{}); err != nil {
		t.Fatalf("handshake after the ICE restart: %v", err)
	}
	waitCount(t, "handshakes", func() float64 { return float64(mustShow(t, g, info.ID).Internal.DTLS.Handshakes) }, 2)
}
