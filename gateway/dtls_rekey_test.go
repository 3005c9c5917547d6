package gateway

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDTLSRehandshake: an update with the peer's new fingerprint (a
// re-offer) re-keys the DTLS leg with a new handshake; media flows with
// the new keys, the SDES leg keeps its key, and the events tell both
// handshakes.
func TestDTLSRehandshake(t *testing.T) {
	g := startGateway(t, testConfig())
	c := newDTLSCall(t, g, DTLSPassive)
	c.exchange(t, 5, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if _, err := g.Rekey(ctx, c.info.ID, "internal"); err == nil {
		t.Fatal("the rekey API re-keyed a DTLS leg")
	}
	// The peer re-offers with a new certificate.
	for _, conn := range c.web.conns {
		_ = conn.Close()
	}
	c.web.conns = nil
	fresh, err := generateDTLSCert()
	if err != nil {
		t.Fatal(err)
	}
	c.web.cert = fresh
	if _, err := g.Update(ctx, c.info.ID, UpdateRequest{Internal: &LegUpdate{Fingerprint: fresh.fp.String(), Setup: "active"}}); err != nil {
		t.Fatal(err)
	}
	conn, err := c.web.handshake(c.info.Internal.Local, true, g.DTLSFingerprint(), dtlsPeerOpts{})
	if err != nil {
		t.Fatalf("second handshake: %v", err)
	}
	c.webOut, c.webIn = srtpContexts(t, conn, true)
	waitCount(t, "handshakes", func() float64 { return float64(mustShow(t, g, c.info.ID).Internal.DTLS.Handshakes) }, 2)
	c.exchange(t, 5, 100)
	info := mustShow(t, g, c.info.ID)
	if info.Cloud.KeyEpoch != 1 || info.Internal.DTLS.PeerFingerprint.String() != fresh.fp.String() {
		t.Fatalf("after the re-handshake: cloud key epoch %d, peer fingerprint %s", info.Cloud.KeyEpoch, info.Internal.DTLS.PeerFingerprint)
	}
	evs, _ := g.events.since(ctx, 0, 1000, 0)
	done := 0
	for _, e := range evs {
		if e.Type == EventDTLSDone && e.Session == c.info.ID {
			done++
			if e.Leg != "internal" || e.Reason == "" || e.KeyEpoch != uint32(done) {
				t.Fatalf("event %+v", e)
			}
		}
	}
	if done != 2 {
		t.Fatalf("%d dtls_handshake_done events, want 2", done)
	}
	// A DTLS leg takes no a=crypto, an SDES leg no fingerprint.
	var re *RequestError
	if _, err := g.Update(ctx, c.info.ID, UpdateRequest{Internal: &LegUpdate{Crypto: c.sipKeyLine}}); !errors.As(err, &re) {
		t.Fatalf("crypto on a DTLS leg: %v", err)
	}
	if _, err := g.Update(ctx, c.info.ID, UpdateRequest{Cloud: &LegUpdate{Fingerprint: fresh.fp.String()}}); !errors.As(err, &re) {
		t.Fatalf("fingerprint on an SDES leg: %v", err)
	}
}

// TestDTLSFailedEvent: a refused handshake is reported with its reason.
func TestDTLSFailedEvent(t *testing.T) {
	g := startGateway(t, testConfig())
	web := newDTLSPeer(t)
	other, _ := generateDTLSCert()
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Fingerprint: other.fp.String()},
		Cloud:    LegRequest{RTCPMux: true, Crypto: benchKeyLine},
	})
	if _, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 5 * time.Second}); err == nil {
		t.Fatal("handshake with a wrong fingerprint succeeded")
	}
	waitDTLS(t, g, info.ID, true, DTLSStateFailed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, _ := g.events.since(ctx, 0, 1000, 0)
	for _, e := range evs {
		if e.Type == EventDTLSFailed && e.Session == info.ID && e.Reason == dtlsFingerprintMismatch {
			return
		}
	}
	t.Fatalf("no dtls_handshake_failed event in %+v", evs)
}

// TestDTLSRequestErrors: bad DTLS requests are refused with the field.
func TestDTLSRequestErrors(t *testing.T) {
	g := startGateway(t, testConfig())
	fp := g.DTLSFingerprint().String()
	tests := []struct {
		name  string
		leg   LegRequest
		field string
	}{
		{"unknown keying", LegRequest{Keying: "zrtp"}, "internal.keying"},
		{"bad setup", LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: "holdconn", Fingerprint: fp}, "internal.setup"},
		{"bad fingerprint", LegRequest{Keying: KeyingDTLS, NoICE: true, Fingerprint: "sha-256 00"}, "internal.fingerprint"},
		{"crypto on dtls", LegRequest{Keying: KeyingDTLS, NoICE: true, Fingerprint: fp, Crypto: benchKeyLine}, "internal.crypto"},
		{"unknown profile", LegRequest{Keying: KeyingDTLS, NoICE: true, Fingerprint: fp, DTLSProfiles: []string{"SRTP_NULL"}}, "internal.dtls_profiles"},
		{"fingerprint on sdes", LegRequest{Crypto: benchKeyLine, Fingerprint: fp}, "internal.keying"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := g.Create(ctx, CreateRequest{Internal: tc.leg, Cloud: LegRequest{RTCPMux: true, Crypto: newKeyLine(t, suiteAES128SHA80)}})
			var re *RequestError
			if !errors.As(err, &re) || re.Field != tc.field {
				t.Fatalf("error %v, want a RequestError on %s", err, tc.field)
			}
		})
	}
}

// TestDTLSFingerprintLater: the gateway offers first, so the leg has no
// peer fingerprint yet: DTLS records are dropped and counted until an
// update gives it, then the handshake completes.
func TestDTLSFingerprintLater(t *testing.T) {
	g := startGateway(t, testConfig())
	web := newDTLSPeer(t)
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, NoICE: true},
		Cloud:    LegRequest{RTCPMux: true, Crypto: benchKeyLine},
	})
	if _, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 300 * time.Millisecond}); err == nil {
		t.Fatal("a handshake completed before the peer's fingerprint was known")
	}
	if c := mustShow(t, g, info.ID).Internal.Counters; c.DTLSDropped == 0 {
		t.Fatal("records before the fingerprint were not counted")
	}
	web.conns = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := g.Update(ctx, info.ID, UpdateRequest{Internal: &LegUpdate{Fingerprint: web.cert.fp.String()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{}); err != nil {
		t.Fatalf("handshake after the update: %v; %+v %+v", err, mustShow(t, g, info.ID).Internal.DTLS, mustShow(t, g, info.ID).Internal.Counters)
	}
	waitDTLS(t, g, info.ID, true, DTLSStateConnected)
}

// TestDTLSPeerClose: the peer's close_notify after the handshake shows as
// state closed; the media keys stay until the session ends.
func TestDTLSPeerClose(t *testing.T) {
	g := startGateway(t, testConfig())
	c := newDTLSCall(t, g, DTLSPassive)
	c.exchange(t, 3, 1)
	for _, conn := range c.web.conns {
		_ = conn.Close()
	}
	c.web.conns = nil
	waitDTLS(t, g, c.info.ID, true, DTLSStateClosed)
	c.exchange(t, 3, 10)
}
