package gateway

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/mediaedge/mediaedge/internal/config"
)

// captureConn records the first datagram a DTLS client writes.
type captureConn struct {
	once  sync.Once
	first chan []byte
	done  chan struct{}
}

func (c *captureConn) ReadFrom([]byte) (int, net.Addr, error) { <-c.done; return 0, nil, net.ErrClosed }
func (c *captureConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.once.Do(func() { c.first <- append([]byte(nil), b...) })
	return len(b), nil
}
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// clientHello returns the first flight of a pion/dtls client offering
// profiles (none: no use_srtp).
func clientHello(t testing.TB, profiles ...dtls.SRTPProtectionProfile) []byte {
	t.Helper()
	cert, err := generateDTLSCert()
	if err != nil {
		t.Fatal(err)
	}
	cc := &captureConn{first: make(chan []byte, 1), done: make(chan struct{})}
	opts := []dtls.ClientOption{dtls.WithCertificates(cert.cert), dtls.WithInsecureSkipVerify(true), dtls.WithLoggerFactory(discardLogs)}
	if len(profiles) > 0 {
		opts = append(opts, dtls.WithSRTPProtectionProfiles(profiles...))
	}
	c, err := dtls.ClientWithOptions(cc, &net.UDPAddr{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.HandshakeContext(ctx) }()
	b := <-cc.first
	cancel()
	close(cc.done)
	<-errc
	_ = c.Close()
	return b
}

func TestCheckClientHello(t *testing.T) {
	gcm := []*dtlsProfile{lookupDTLSProfile("SRTP_AEAD_AES_128_GCM")}
	sha := []*dtlsProfile{lookupDTLSProfile("SRTP_AES128_CM_SHA1_80")}
	hello := clientHello(t, dtls.SRTP_AEAD_AES_128_GCM)
	bare := clientHello(t)
	tests := []struct {
		name     string
		in       []byte
		profiles []*dtlsProfile
		want     helloCheck
	}{
		{"offered profile", hello, gcm, helloOK},
		{"profile not allowed", hello, sha, helloNoProfile},
		{"no use_srtp", bare, gcm, helloNoSRTP},
		{"truncated record", hello[:40], gcm, helloNotHello},
		{"fragment", fragmentOf(hello), gcm, helloPartial},
		{"application data", append([]byte{23}, hello[1:]...), gcm, helloNotHello},
		{"empty", nil, gcm, helloNotHello},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkClientHello(tc.in, tc.profiles); got != tc.want {
				t.Fatalf("checkClientHello = %d, want %d", got, tc.want)
			}
		})
	}
}

// fragmentOf marks the hello as the first fragment of a longer message.
func fragmentOf(hello []byte) []byte {
	b := append([]byte(nil), hello...)
	b[dtlsRecordHeader+3]++ // message length one more than the fragment
	return b
}

func TestClassify(t *testing.T) {
	tests := []struct {
		b    byte
		want packetKind
	}{{0, kindSTUN}, {3, kindSTUN}, {4, kindOther}, {19, kindOther}, {20, kindDTLS}, {63, kindDTLS},
		{64, kindOther}, {127, kindOther}, {128, kindRTP}, {191, kindRTP}, {192, kindOther}, {255, kindOther}}
	for _, tc := range tests {
		if got := classify([]byte{tc.b}); got != tc.want {
			t.Errorf("classify(%d) = %d, want %d", tc.b, got, tc.want)
		}
	}
}

// FuzzDTLSDemux feeds datagrams to the first-byte demultiplexer and to
// the ClientHello check of DTLS record intake: never a panic, and only a
// well-formed ClientHello record that offers an allowed profile passes.
func FuzzDTLSDemux(f *testing.F) {
	f.Add(clientHello(f, dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80))
	f.Add(clientHello(f))
	f.Add([]byte{0x80, 0, 0, 1})
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42})
	all := dtlsProfiles
	f.Fuzz(func(t *testing.T, b []byte) {
		k := classify(b)
		r := checkClientHello(b, all)
		if r != helloNotHello && k != kindDTLS {
			t.Fatalf("kind %d datagram taken for a ClientHello (%d)", k, r)
		}
		if r == helloOK && (len(b) < dtlsRecordHeader+dtlsHandshakeHeader || b[0] != dtlsContentHandshake || b[dtlsRecordHeader] != dtlsClientHello) {
			t.Fatal("a datagram that is no ClientHello record passed")
		}
	})
}

// FuzzDTLSLegIntake feeds datagrams to the worker's packet path on a
// passive DTLS leg's socket, as if they had arrived from a peer: STUN,
// DTLS records and SRTP are told apart and each is answered, queued or
// dropped and counted; never a panic, never a blocked worker, and
// nothing reaches the other leg before a handshake keyed the leg.
func FuzzDTLSLegIntake(f *testing.F) {
	f.Add(clientHello(f, dtls.SRTP_AEAD_AES_128_GCM))
	f.Add(clientHello(f))
	f.Add([]byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad})
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0})
	cfg := testConfig()
	cfg.Workers = 1
	cfg.DTLS.HandshakeTimeout = config.Duration(200 * time.Millisecond)
	g := startGateway(f, cfg)
	peer, err := generateDTLSCert()
	if err != nil {
		f.Fatal(err)
	}
	info := mustCreate(f, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Fingerprint: peer.fp.String()},
		Cloud:    LegRequest{Remote: "127.0.0.1:9", RTCPMux: true, Crypto: benchKeyLine},
	})
	s, err := g.lookup(info.ID)
	if err != nil {
		f.Fatal(err)
	}
	src := netip.MustParseAddrPort("127.0.0.1:9")
	buf := make([]byte, bufSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxPacket {
			b = b[:maxPacket]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.w.do(ctx, func() {
			l := &s.legs[legInternal]
			n := copy(buf, b)
			out, o, _, _ := s.w.handle(l.rtp, src, buf, n)
			if out != nil && o != l {
				t.Fatalf("a datagram on the DTLS leg went to the %s leg before any handshake", o.id)
			}
		})
		if err != nil {
			t.Fatalf("the worker did not take the datagram: %v", err)
		}
	})
}
