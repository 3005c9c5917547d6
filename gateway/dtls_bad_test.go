package gateway

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mediaedge/mediaedge/internal/config"
)

// handshakes returns the handshakes counted with result r.
func handshakes(g *Gateway, r string) float64 {
	return testutil.ToFloat64(g.metrics.dtlsHandshakes.WithLabelValues(r))
}

// waitCount waits until f() reaches want.
func waitCount(t *testing.T, what string, f func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for f() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v, want %v", what, f(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newSDESCall is an SDES-SDES session, the bystander of the bad-input
// tests: it must keep working while another session is attacked.
func sdesBystander(t *testing.T, g *Gateway) func(seq uint16) {
	a, b := newPeer(t), newPeer(t)
	ka, kb := newKeyLine(t, suiteAES128SHA80), newKeyLine(t, suiteAEAD128)
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Remote: a.addr(), RTCPMux: true, Crypto: ka},
		Cloud:    LegRequest{Remote: b.addr(), RTCPMux: true, Crypto: kb},
	})
	aOut, bIn := contextFor(t, ka, false), contextFor(t, info.Cloud.Crypto, true)
	return func(seq uint16) {
		t.Helper()
		plain := rtpPacket(t, 0x5151, seq, 100)
		a.send(info.Internal.Local, encRTP(t, aOut, plain))
		mustRecvRTP(t, b, bIn, plain)
	}
}

func TestDTLSRefusesBadPeers(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(*Config)
		wrongFP bool
		opts    dtlsPeerOpts
		want    string
	}{
		{name: "wrong fingerprint", wrongFP: true, want: dtlsFingerprintMismatch},
		{name: "no use_srtp", opts: dtlsPeerOpts{noSRTP: true, timeout: 5 * time.Second}, want: dtlsNoSRTP},
		{name: "profile not allowed", cfg: func(c *Config) { c.DTLS.Profiles = []string{"SRTP_AES128_CM_SHA1_80"} },
			opts: dtlsPeerOpts{profiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM}}, want: dtlsProfileRefused},
		{name: "never finishes", cfg: func(c *Config) { c.DTLS.HandshakeTimeout = config.Duration(300 * time.Millisecond) },
			opts: dtlsPeerOpts{timeout: time.Second, deaf: true}, want: dtlsTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			g := startGateway(t, cfg)
			bystander := sdesBystander(t, g)
			bystander(1)
			// The attacked session's SDES leg keeps working too.
			sip := newPeer(t)
			key := newKeyLine(t, suiteAES128SHA80)
			web := newDTLSPeer(t)
			fp := web.cert.fp
			if tc.wrongFP {
				other, err := generateDTLSCert()
				if err != nil {
					t.Fatal(err)
				}
				fp = other.fp
			}
			info := mustCreate(t, g, CreateRequest{
				Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: "active", Fingerprint: fp.String(), Remote: web.addr()},
				Cloud:    LegRequest{Remote: sip.addr(), RTCPMux: true, Crypto: key},
			})
			_, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, tc.opts)
			if err == nil {
				t.Fatal("the handshake succeeded")
			}
			d := waitDTLS(t, g, info.ID, true, DTLSStateFailed)
			if d.Reason != tc.want {
				t.Fatalf("reason %q, want %q", d.Reason, tc.want)
			}
			waitCount(t, "handshakes "+tc.want, func() float64 { return handshakes(g, tc.want) }, 1)
			if n := handshakes(g, dtlsOK); n != 0 {
				t.Fatalf("%v handshakes counted ok", n)
			}
			// No keys: the DTLS leg has none, and SRTP toward it is
			// dropped as no_key, not sent.
			sout := contextFor(t, key, false)
			sip.send(info.Cloud.Local, encRTP(t, sout, rtpPacket(t, 7, 1, 50)))
			waitCount(t, "no_key drops", func() float64 { return float64(mustShow(t, g, info.ID).Internal.Counters.NoKey) }, 1)
			web.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if b := web.recvMedia(100 * time.Millisecond); b != nil {
				t.Fatal("media reached the refused peer")
			}
			bystander(2)
		})
	}
}

// TestDTLSFloodIsCounted floods a passive DTLS leg with DTLS records that
// are no ClientHello: each is dropped and counted, the worker and the
// other sessions go on, and a real handshake still completes afterwards.
func TestDTLSFloodIsCounted(t *testing.T) {
	g := startGateway(t, testConfig())
	bystander := sdesBystander(t, g)
	web := newDTLSPeer(t)
	sip := newPeer(t)
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: "active", Fingerprint: web.cert.fp.String()},
		Cloud:    LegRequest{Remote: sip.addr(), RTCPMux: true, Crypto: newKeyLine(t, suiteAES128SHA80)},
	})
	flood := newPeer(t)
	const n = 3000
	junk := make([]byte, 200)
	for i := 0; i < n; i++ {
		_, _ = rand.Read(junk)
		junk[0] = byte(20 + i%44) // every DTLS content type byte
		if junk[0] == dtlsContentHandshake {
			junk[13] = 2 // a handshake record, but no ClientHello
		}
		flood.send(info.Internal.Local, junk)
		if i%500 == 0 {
			bystander(uint16(i/500 + 1))
		}
	}
	// Every datagram is accounted for once the flood is over (the kernel
	// may have dropped some of a burst: compare with what arrived).
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := mustShow(t, g, info.ID).Internal.Counters
		if c.DTLSDropped == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dtls_dropped %d after %d junk records", c.DTLSDropped, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := mustShow(t, g, info.ID).Internal.DTLS; d.State != DTLSStateNew {
		t.Fatalf("junk moved the leg to %q", d.State)
	}
	if _, err := web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{}); err != nil {
		t.Fatalf("handshake after the flood: %v", err)
	}
	waitDTLS(t, g, info.ID, true, DTLSStateConnected)
	bystander(100)
}

// TestDTLSHandshakeLimit: with max_handshakes 1, a second handshake while
// one hangs is refused and counted; it succeeds once the first is over.
func TestDTLSHandshakeLimit(t *testing.T) {
	cfg := testConfig()
	cfg.DTLS.MaxHandshakes = 1
	cfg.DTLS.HandshakeTimeout = config.Duration(time.Second)
	g := startGateway(t, cfg)
	mk := func(web *dtlsPeer) *SessionInfo {
		return mustCreate(t, g, CreateRequest{
			Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: "active", Fingerprint: web.cert.fp.String()},
			Cloud:    LegRequest{Remote: newPeer(t).addr(), RTCPMux: true, Crypto: newKeyLine(t, suiteAES128SHA80)},
		})
	}
	hung, web := newDTLSPeer(t), newDTLSPeer(t)
	a, b := mk(hung), mk(web)
	// The hung peer sends its ClientHello and goes silent.
	_, _ = hung.handshake(a.Internal.Local, true, a.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 100 * time.Millisecond, deaf: true})
	waitDTLS(t, g, a.ID, true, DTLSStateConnecting)
	if n := g.dtlsActive.Load(); n != 1 {
		t.Fatalf("%d handshakes in progress, want 1", n)
	}
	_, err := web.handshake(b.Internal.Local, true, b.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("the second handshake never completed: %v", err)
	}
	if handshakes(g, dtlsLimit) < 1 {
		t.Fatal("no handshake refused by max_handshakes")
	}
	waitDTLS(t, g, a.ID, true, DTLSStateFailed)
	waitDTLS(t, g, b.ID, true, DTLSStateConnected)
}

// dropsFor sums the workers' drops of one reason on one leg.
func dropsFor(g *Gateway, id legID, r reason) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n uint64
	for _, w := range g.workers {
		n += w.stats.drops[id][r].Load()
	}
	return n
}

// TestDTLSQueueFull: records beyond a leg's queue_len while its
// handshake runs are dropped and counted as dtls_queue_full; the worker
// never waits for the handshake.
func TestDTLSQueueFull(t *testing.T) {
	cfg := testConfig()
	cfg.DTLS.QueueLen = 4
	g := startGateway(t, cfg)
	bystander := sdesBystander(t, g)
	web := newDTLSPeer(t)
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Fingerprint: web.cert.fp.String()},
		Cloud:    LegRequest{RTCPMux: true, Crypto: benchKeyLine},
	})
	// A ClientHello starts the handshake; the peer then goes deaf.
	_, _ = web.handshake(info.Internal.Local, true, info.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 50 * time.Millisecond, deaf: true})
	waitDTLS(t, g, info.ID, true, DTLSStateConnecting)
	junk := make([]byte, 300)
	junk[0] = 23 // application data, epoch 1: pion discards it
	junk[4] = 1
	dst := udpAddr(t, info.Internal.Local)
	for round := 0; round < 50 && dropsFor(g, legInternal, reasonDTLSQueue) == 0; round++ {
		for i := 0; i < 200; i++ {
			_, _ = web.conn.WriteToUDP(junk, dst)
		}
		bystander(uint16(round + 1))
	}
	if dropsFor(g, legInternal, reasonDTLSQueue) == 0 {
		t.Fatal("no record was dropped as dtls_queue_full")
	}
	bystander(1000)
}

// TestDTLSActiveLimitRetries: an active leg whose handshake max_handshakes
// refused starts it once a slot is free (housekeeping, every second).
func TestDTLSActiveLimitRetries(t *testing.T) {
	cfg := testConfig()
	cfg.DTLS.MaxHandshakes = 1
	cfg.DTLS.HandshakeTimeout = config.Duration(time.Second)
	g := startGateway(t, cfg)
	silent, web := newPeer(t), newDTLSPeer(t)
	mk := func(remote string, fp Fingerprint) *SessionInfo {
		return mustCreate(t, g, CreateRequest{
			Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: "passive", Fingerprint: fp.String(), Remote: remote},
			Cloud:    LegRequest{RTCPMux: true, Crypto: benchKeyLine},
		})
	}
	a := mk(silent.addr(), web.cert.fp) // no one answers: holds the slot until its timeout
	b := mk(web.addr(), web.cert.fp)
	if _, err := web.handshake(b.Internal.Local, false, b.Internal.DTLS.Fingerprint, dtlsPeerOpts{timeout: 8 * time.Second}); err != nil {
		t.Fatalf("the refused active handshake never ran: %v", err)
	}
	waitDTLS(t, g, a.ID, true, DTLSStateFailed)
	waitDTLS(t, g, b.ID, true, DTLSStateConnected)
	if handshakes(g, dtlsLimit) < 1 {
		t.Fatal("no handshake was refused by max_handshakes")
	}
}
