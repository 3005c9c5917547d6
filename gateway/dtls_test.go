package gateway

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
)

// dtlsCall is a session whose internal leg is DTLS toward a dtlsPeer and
// whose cloud leg is SDES toward a plain UDP peer.
type dtlsCall struct {
	g          *Gateway
	info       *SessionInfo
	web        *dtlsPeer
	sip        *peer
	webOut     *srtp.Context // the web peer protects with it
	webIn      *srtp.Context // the web peer opens with it
	sipOut     *srtp.Context
	sipIn      *srtp.Context
	sipKeyLine string
}

// newDTLSCall creates the session and runs the handshake with the
// gateway in role (active or passive).
func newDTLSCall(t *testing.T, g *Gateway, role DTLSRole) *dtlsCall {
	t.Helper()
	c := &dtlsCall{g: g, web: newDTLSPeer(t), sip: newPeer(t)}
	peerSetup := "active"
	if role == DTLSActive {
		peerSetup = "passive"
	}
	c.sipKeyLine = newKeyLine(t, suiteAES128SHA80)
	req := CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Setup: peerSetup, Fingerprint: c.web.cert.fp.String()},
		Cloud:    LegRequest{Remote: c.sip.addr(), RTCPMux: true, Crypto: c.sipKeyLine},
	}
	if role == DTLSActive {
		// The gateway connects: it must know where to.
		req.Internal.Remote = c.web.addr()
	}
	c.info = mustCreate(t, g, req)
	d := c.info.Internal.DTLS
	if d == nil || d.Setup != role || d.Fingerprint.String() != g.DTLSFingerprint().String() {
		t.Fatalf("DTLS info %+v: want setup %s and the gateway's fingerprint", d, role)
	}
	if c.info.Internal.Keying != KeyingDTLS || c.info.Cloud.Keying != KeyingSDES {
		t.Fatalf("keying %q/%q", c.info.Internal.Keying, c.info.Cloud.Keying)
	}
	conn, err := c.web.handshake(c.info.Internal.Local, role == DTLSPassive, d.Fingerprint, dtlsPeerOpts{})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.webOut, c.webIn = srtpContexts(t, conn, role == DTLSPassive)
	waitDTLS(t, g, c.info.ID, true, DTLSStateConnected)
	c.sipOut = contextFor(t, c.sipKeyLine, false)
	c.sipIn = contextFor(t, c.info.Cloud.Crypto, true)
	return c
}

// exchange sends n packets each way and checks that each arrives
// byte-identical after decryption on the other side.
func (c *dtlsCall) exchange(t *testing.T, n int, seq0 uint16) {
	t.Helper()
	for i := 0; i < n; i++ {
		seq := seq0 + uint16(i)
		// web -> sip
		plain := rtpPacket(t, 0x1111, seq, 160)
		c.web.conn.WriteToUDP(encRTP(t, c.webOut, plain), udpAddr(t, c.info.Internal.Local))
		mustRecvRTP(t, c.sip, c.sipIn, plain)
		// sip -> web
		plain2 := rtpPacket(t, 0x2222, seq, 160)
		c.sip.send(c.info.Cloud.Local, encRTP(t, c.sipOut, plain2))
		b := c.web.recvMedia(2 * time.Second)
		if b == nil {
			t.Fatalf("packet %d: nothing reached the DTLS peer", i)
		}
		got, err := c.webIn.DecryptRTP(nil, b, nil)
		if err != nil {
			t.Fatalf("packet %d: the DTLS peer cannot decrypt: %v", i, err)
		}
		if !bytes.Equal(got, plain2) {
			t.Fatalf("packet %d differs:\n got %x\nwant %x", i, got, plain2)
		}
	}
}

func TestDTLSToSDESBothRoles(t *testing.T) {
	for _, role := range []DTLSRole{DTLSPassive, DTLSActive} {
		t.Run(string(role), func(t *testing.T) {
			g := startGateway(t, testConfig())
			c := newDTLSCall(t, g, role)
			c.exchange(t, 50, 1)
			info := mustShow(t, g, c.info.ID)
			d := info.Internal.DTLS
			if d.Profile == "" || d.PeerFingerprint == nil || d.PeerFingerprint.String() != c.web.cert.fp.String() || d.Handshakes != 1 {
				t.Fatalf("DTLS info after the handshake: %+v", d)
			}
			if info.Internal.Counters.PacketsIn != 50 || info.Cloud.Counters.PacketsIn != 50 {
				t.Fatalf("counters: internal in %d, cloud in %d; want 50 each", info.Internal.Counters.PacketsIn, info.Cloud.Counters.PacketsIn)
			}
			if info.Internal.DTLS.ICE != nil {
				t.Fatalf("ICE info %+v on a no_ice leg", info.Internal.DTLS.ICE)
			}
		})
	}
}

// rawKey is one SRTP master key of a test, for trial decryption.
type rawKey struct {
	name      string
	key, salt []byte
	profile   srtp.ProtectionProfile
}

// opens reports whether pkt authenticates under k (a fresh context: no
// replay state).
func (k rawKey) opens(t *testing.T, pkt []byte) bool {
	ctx, err := srtp.CreateContext(k.key, k.salt, k.profile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctx.DecryptRTP(nil, pkt, nil)
	return err == nil
}

func cryptoKey(t *testing.T, name, line string) rawKey {
	c, err := ParseCrypto(line)
	if err != nil {
		t.Fatal(err)
	}
	return rawKey{name: name, key: c.Keys[0].Key, salt: c.Keys[0].Salt, profile: c.Suite.Profile}
}

// TestDTLSKeysStayOnTheirLeg captures both legs of a DTLS-SDES call and
// tries every packet against every key: each authenticates under the key
// of its own leg and direction only, so nothing derived from the DTLS
// handshake ever protects the SDES leg, and the reverse.
func TestDTLSKeysStayOnTheirLeg(t *testing.T) {
	for _, role := range []DTLSRole{DTLSPassive, DTLSActive} {
		t.Run(string(role), func(t *testing.T) {
			g := startGateway(t, testConfig())
			c := newDTLSCall(t, g, role)
			conn := c.web.conns[len(c.web.conns)-1]
			id, _ := conn.SelectedSRTPProtectionProfile()
			st, _ := conn.ConnectionState()
			sc := srtp.Config{Profile: srtp.ProtectionProfile(id)}
			if err := sc.ExtractSessionKeysFromDTLS(&st, role == DTLSPassive); err != nil {
				t.Fatal(err)
			}
			keys := []rawKey{
				{name: "dtls peer write", key: sc.Keys.LocalMasterKey, salt: sc.Keys.LocalMasterSalt, profile: sc.Profile},
				{name: "dtls gateway write", key: sc.Keys.RemoteMasterKey, salt: sc.Keys.RemoteMasterSalt, profile: sc.Profile},
				cryptoKey(t, "sdes peer write", c.sipKeyLine),
				cryptoKey(t, "sdes gateway write", c.info.Cloud.Crypto),
			}
			var captured [4][][]byte // by the index of the key that must open them
			for i := 0; i < 20; i++ {
				seq := uint16(100 + i)
				p1 := encRTP(t, c.webOut, rtpPacket(t, 0x1111, seq, 80))
				captured[0] = append(captured[0], p1)
				c.web.conn.WriteToUDP(p1, udpAddr(t, c.info.Internal.Local))
				b, _ := c.sip.recv(2 * time.Second)
				if b == nil {
					t.Fatal("nothing reached the SDES peer")
				}
				captured[3] = append(captured[3], b)
				p2 := encRTP(t, c.sipOut, rtpPacket(t, 0x2222, seq, 80))
				captured[2] = append(captured[2], p2)
				c.sip.send(c.info.Cloud.Local, p2)
				b = c.web.recvMedia(2 * time.Second)
				if b == nil {
					t.Fatal("nothing reached the DTLS peer")
				}
				captured[1] = append(captured[1], b)
			}
			for own, pkts := range captured {
				for _, pkt := range pkts {
					for ki, k := range keys {
						if got := k.opens(t, pkt); got != (ki == own) {
							t.Fatalf("a packet protected with the %s key: opens under the %s key = %v", keys[own].name, k.name, got)
						}
					}
				}
			}
			for i := range keys {
				for j := range keys {
					if i != j && bytes.Equal(keys[i].key, keys[j].key) {
						t.Fatalf("the %s and %s keys are equal", keys[i].name, keys[j].name)
					}
				}
			}
		})
	}
}
