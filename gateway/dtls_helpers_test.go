package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/deadline"
)

// dtlsPeer is a WebRTC-like endpoint for tests: one UDP socket on which
// DTLS (pion/dtls) and SRTP are demultiplexed by first byte, as a browser
// does (RFC 7983). Its certificate is its own, self-signed.
type dtlsPeer struct {
	t     testing.TB
	conn  *net.UDPConn
	cert  *dtlsCert
	dtlsq chan []byte
	media chan []byte
	done  chan struct{}
	wg    sync.WaitGroup
	conns []*dtls.Conn
}

func newDTLSPeer(t testing.TB) *dtlsPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := generateDTLSCert()
	if err != nil {
		t.Fatal(err)
	}
	p := &dtlsPeer{t: t, conn: c, cert: cert, dtlsq: make(chan []byte, 64), media: make(chan []byte, 1024), done: make(chan struct{})}
	p.wg.Add(1)
	go p.read()
	t.Cleanup(p.close)
	return p
}

func (p *dtlsPeer) read() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		var q chan []byte
		switch classify(b) {
		case kindDTLS:
			q = p.dtlsq
		case kindRTP:
			q = p.media
		default:
			continue
		}
		select {
		case q <- b:
		default:
		}
	}
}

func (p *dtlsPeer) close() {
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conn.Close()
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
}

func (p *dtlsPeer) addr() string { return p.conn.LocalAddr().String() }

// recvMedia returns the next SRTP/SRTCP datagram, or nil after timeout.
func (p *dtlsPeer) recvMedia(timeout time.Duration) []byte {
	select {
	case b := <-p.media:
		return b
	case <-time.After(timeout):
		return nil
	}
}

// peerConn is the net.PacketConn pion/dtls runs over on a dtlsPeer.
type peerConn struct {
	p      *dtlsPeer
	remote *net.UDPAddr
	rd     *deadline.Deadline
	deaf   bool
	closed chan struct{}
	once   sync.Once
}

func (c *peerConn) ReadFrom(b []byte) (int, net.Addr, error) {
	q := c.p.dtlsq
	if c.deaf {
		q = nil
	}
	select {
	case x := <-q:
		return copy(b, x), c.remote, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.p.done:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *peerConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	return c.p.conn.WriteToUDP(b, c.remote)
}
func (c *peerConn) Close() error                      { c.once.Do(func() { close(c.closed) }); return nil }
func (c *peerConn) LocalAddr() net.Addr               { return c.p.conn.LocalAddr() }
func (c *peerConn) SetDeadline(t time.Time) error     { return c.SetReadDeadline(t) }
func (c *peerConn) SetReadDeadline(t time.Time) error { c.rd.Set(t); return nil }
func (c *peerConn) SetWriteDeadline(time.Time) error  { return nil }

// dtlsPeerOpts tweak the peer's handshake for the bad-input tests.
type dtlsPeerOpts struct {
	profiles []dtls.SRTPProtectionProfile // nil: every profile; empty non-nil: no use_srtp
	noSRTP   bool
	timeout  time.Duration
	// deaf: the peer never reads the gateway's records (a handshake
	// that never finishes).
	deaf bool
}

// handshake runs a DTLS handshake with the gateway at remote (client:
// the peer connects) and checks the gateway's certificate against gwFP.
func (p *dtlsPeer) handshake(remote string, client bool, gwFP Fingerprint, o dtlsPeerOpts) (*dtls.Conn, error) {
	p.t.Helper()
	ra, err := net.ResolveUDPAddr("udp4", remote)
	if err != nil {
		p.t.Fatal(err)
	}
	profiles := o.profiles
	if profiles == nil {
		profiles = []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80}
	}
	if o.noSRTP {
		profiles = nil
	}
	opts := []dtls.Option{
		dtls.WithCertificates(p.cert.cert),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithLoggerFactory(discardLogs),
		dtls.WithVerifyPeerCertificate(func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !gwFP.matches(raw[0]) {
				return errors.New("test peer: the gateway's certificate does not match its fingerprint")
			}
			return nil
		}),
	}
	if len(profiles) > 0 {
		opts = append(opts, dtls.WithSRTPProtectionProfiles(profiles...))
	}
	pc := &peerConn{p: p, remote: ra, rd: deadline.New(), deaf: o.deaf, closed: make(chan struct{})}
	var c *dtls.Conn
	if client {
		co := make([]dtls.ClientOption, len(opts))
		for i, o := range opts {
			co[i] = o
		}
		c, err = dtls.ClientWithOptions(pc, ra, co...)
	} else {
		so := []dtls.ServerOption{dtls.WithClientAuth(dtls.RequireAnyClientCert)}
		for _, o := range opts {
			so = append(so, o)
		}
		c, err = dtls.ServerWithOptions(pc, ra, so...)
	}
	if err != nil {
		return nil, err
	}
	p.conns = append(p.conns, c)
	timeout := o.timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// srtpContexts derives the peer's SRTP contexts from a finished
// handshake with pion/srtp's own RFC 5764 extraction: out protects what
// the peer sends, in opens what it receives.
func srtpContexts(t testing.TB, c *dtls.Conn, client bool) (out, in *srtp.Context) {
	t.Helper()
	id, ok := c.SelectedSRTPProtectionProfile()
	if !ok {
		t.Fatal("no SRTP profile negotiated")
	}
	st, ok := c.ConnectionState()
	if !ok {
		t.Fatal("no connection state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(id)}
	if err := cfg.ExtractSessionKeysFromDTLS(&st, client); err != nil {
		t.Fatal(err)
	}
	out, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
	if err != nil {
		t.Fatal(err)
	}
	in, err = srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile,
		srtp.SRTPReplayProtection(256), srtp.SRTCPReplayProtection(256))
	if err != nil {
		t.Fatal(err)
	}
	return out, in
}

// waitDTLS waits until leg's DTLS state is want (or the test's bound).
func waitDTLS(t testing.TB, g *Gateway, id string, internal bool, want string) *DTLSInfo {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info := mustShow(t, g, id)
		li := info.Cloud
		if internal {
			li = info.Internal
		}
		if li.DTLS == nil {
			t.Fatal("the leg has no DTLS state")
		}
		if li.DTLS.State == want {
			return li.DTLS
		}
		if time.Now().After(deadline) {
			t.Fatalf("DTLS state %q (reason %q), want %q", li.DTLS.State, li.DTLS.Reason, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func udpAddr(t testing.TB, s string) *net.UDPAddr {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
