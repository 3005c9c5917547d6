package gateway

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/deadline"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// webPeer is a browser-shaped test endpoint: one UDP socket carrying
// STUN, DTLS and SRTP (RFC 7983), a certificate of its own, ICE checks
// toward an ICE-lite peer, a DTLS handshake with pion/dtls and the
// SRTP keys it exports. A reader goroutine sorts what arrives by first
// byte; close stops it.
type webPeer struct {
	conn  *net.UDPConn
	cert  tls.Certificate
	fp    string // a=fingerprint value
	ufrag string
	pwd   string

	stunIn chan []byte
	dtlsIn chan []byte
	srtpIn chan []byte
	done   chan struct{}
	wg     sync.WaitGroup

	dc             *dtls.Conn
	enc, dec       *srtp.Context
	encKey, decKey []byte // the exported master keys (key || salt)
	profile        dtls.SRTPProtectionProfile
}

func newWebPeer(t *testing.T) *webPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &webPeer{conn: c, ufrag: "7++r", pwd: "fxbdu5oskw8BCArblvwl9lDz",
		stunIn: make(chan []byte, 16), dtlsIn: make(chan []byte, 64), srtpIn: make(chan []byte, 256), done: make(chan struct{})}
	p.newCert(t)
	p.wg.Add(1)
	go p.read()
	t.Cleanup(p.close)
	return p
}

// newCert gives the peer a fresh certificate (a re-offer with a new
// fingerprint).
func (p *webPeer) newCert(t *testing.T) {
	t.Helper()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fingerprint.Fingerprint(x, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	p.cert, p.fp = cert, "sha-256 "+strings.ToUpper(fp)
}

func (p *webPeer) read() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		var ch chan []byte
		switch c := b[0]; {
		case c < 4:
			ch = p.stunIn
		case c >= 20 && c <= 63:
			ch = p.dtlsIn
		case c >= 128 && c <= 191:
			ch = p.srtpIn
		default:
			continue
		}
		select {
		case ch <- b:
		case <-p.done:
			return
		default: // the test is not reading: drop as a socket would
		}
	}
}

func (p *webPeer) close() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	if p.dc != nil {
		_ = p.dc.Close()
	}
	p.conn.Close()
	p.wg.Wait()
}

func (p *webPeer) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// chromeOffer is the Chromium offer of gateway/ng/testdata with this
// peer's address, port, ICE credentials and fingerprint in place of the
// browser's (its candidates name the peer's socket).
func (p *webPeer) chromeOffer(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("ng/testdata/chrome-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	return p.fromChrome(string(b))
}

// fromChrome rewrites a Chromium SDP for this peer.
func (p *webPeer) fromChrome(s string) string {
	a := p.addr()
	s = regexp.MustCompile(`(?m)^a=candidate:.*\r\n`).ReplaceAllString(s, "")
	s = regexp.MustCompile(`(?m)^(m=(audio|video)) \d+ `).ReplaceAllString(s, fmt.Sprintf("$1 %d ", a.Port()))
	s = strings.ReplaceAll(s, "c=IN IP4 192.0.2.2", "c=IN IP4 "+a.Addr().String())
	s = regexp.MustCompile(`(?m)^a=fingerprint:.*$`).ReplaceAllString(s, "a=fingerprint:"+p.fp+"\r")
	s = regexp.MustCompile(`(?m)^a=ice-ufrag:.*$`).ReplaceAllString(s, "a=ice-ufrag:"+p.ufrag+"\r")
	s = strings.ReplaceAll(s, "a=mid:0\r\n", fmt.Sprintf("a=mid:0\r\na=candidate:1 1 udp 2122194687 %s %d typ host\r\n", a.Addr(), a.Port()))
	return s
}

// nominate sends an ICE connectivity check with USE-CANDIDATE, signed
// with the gateway's password, to the gateway's candidate, and waits for
// the success response.
func (p *webPeer) nominate(t *testing.T, to netip.AddrPort, ufrag, pwd string) {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag+":"+p.ufrag),
		rawAttr(stun.AttrICEControlling, make([]byte, 8)), rawAttr(stun.AttrUseCandidate, nil), stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; try < 5; try++ {
		if _, err := p.conn.WriteToUDPAddrPort(m.Raw, to); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-p.stunIn:
			r := &stun.Message{Raw: b}
			if err := r.Decode(); err != nil || r.Type != stun.BindingSuccess || r.TransactionID != m.TransactionID {
				t.Fatalf("ICE check: %v %v", r.Type, err)
			}
			if err := stun.NewShortTermIntegrity(pwd).Check(r); err != nil {
				t.Fatalf("the check's response is not signed with the gateway's password: %v", err)
			}
			return
		case <-time.After(time.Second):
		}
	}
	t.Fatal("no answer to the ICE check")
}

// checkRefused sends a connectivity check under ufrag and pwd and wants
// an error response (the credentials are not the gateway's).
func (p *webPeer) checkRefused(t *testing.T, to netip.AddrPort, ufrag, pwd string) {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag+":"+p.ufrag),
		rawAttr(stun.AttrICEControlling, make([]byte, 8)), rawAttr(stun.AttrUseCandidate, nil),
		stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(m.Raw, to); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-p.stunIn:
		r := &stun.Message{Raw: b}
		if err := r.Decode(); err != nil || r.Type != stun.BindingError {
			t.Fatalf("a check with stale credentials got %v (%v), want an error response", r.Type, err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no answer to a check with stale credentials")
	}
}

// handshake runs DTLS with the gateway at to: as the client when client
// is set, else as the server. It checks the gateway's certificate
// against gwFP (the a=fingerprint of the gateway's SDP) and derives the
// SRTP contexts from the exported keys.
func (p *webPeer) handshake(t *testing.T, to netip.AddrPort, client bool, gwFP string) {
	t.Helper()
	if err := p.tryHandshake(t, to, client, gwFP); err != nil {
		t.Fatalf("DTLS handshake: %v", err)
	}
}

// tryHandshake is handshake, returning the handshake's error.
func (p *webPeer) tryHandshake(t *testing.T, to netip.AddrPort, client bool, gwFP string) error {
	t.Helper()
	if p.dc != nil {
		_ = p.dc.Close()
		p.dc = nil
	}
	for len(p.srtpIn) > 0 {
		<-p.srtpIn // what the old keys protected
	}
	pc := &webDTLSConn{p: p, to: to, rd: deadline.New(), closed: make(chan struct{})}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no certificate")
		}
		x, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		fp, err := fingerprint.Fingerprint(x, crypto.SHA256)
		if err != nil {
			return err
		}
		if got := "sha-256 " + strings.ToUpper(fp); got != gwFP {
			return fmt.Errorf("the gateway's certificate is %s, its SDP said %s", got, gwFP)
		}
		return nil
	}
	// What a browser does: its own self-signed certificate, the peer's
	// checked against the SDP's fingerprint and nothing else.
	common := []dtls.Option{
		dtls.WithCertificates(p.cert),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithVerifyPeerCertificate(verify),
	}
	var dc *dtls.Conn
	var err error
	if client {
		opts := make([]dtls.ClientOption, 0, len(common))
		for _, o := range common {
			opts = append(opts, o)
		}
		dc, err = dtls.ClientWithOptions(pc, net.UDPAddrFromAddrPort(to), opts...)
	} else {
		opts := []dtls.ServerOption{dtls.WithClientAuth(dtls.RequireAnyClientCert)}
		for _, o := range common {
			opts = append(opts, o)
		}
		dc, err = dtls.ServerWithOptions(pc, net.UDPAddrFromAddrPort(to), opts...)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		_ = dc.Close()
		return err
	}
	p.dc = dc
	prof, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		t.Fatal("no SRTP profile negotiated")
	}
	p.profile = prof
	st, ok := dc.ConnectionState()
	if !ok {
		t.Fatal("no DTLS state")
	}
	sc := srtp.Config{Profile: srtp.ProtectionProfile(prof)}
	if err := sc.ExtractSessionKeysFromDTLS(&st, client); err != nil {
		t.Fatal(err)
	}
	k := sc.Keys
	if p.enc, err = srtp.CreateContext(k.LocalMasterKey, k.LocalMasterSalt, sc.Profile); err != nil {
		t.Fatal(err)
	}
	if p.dec, err = srtp.CreateContext(k.RemoteMasterKey, k.RemoteMasterSalt, sc.Profile); err != nil {
		t.Fatal(err)
	}
	p.encKey = append(append([]byte(nil), k.LocalMasterKey...), k.LocalMasterSalt...)
	p.decKey = append(append([]byte(nil), k.RemoteMasterKey...), k.RemoteMasterSalt...)
	return nil
}

// webDTLSConn is the DTLS records of the peer's socket as a PacketConn
// for pion/dtls. A read deadline set while a read waits ends it: pion
// ends its reader that way when a handshake fails.
type webDTLSConn struct {
	p      *webPeer
	to     netip.AddrPort
	rd     *deadline.Deadline
	closed chan struct{}
	once   sync.Once
}

func (c *webDTLSConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case r := <-c.p.dtlsIn:
		select {
		case <-c.closed:
			// A handshake that was replaced: the record is the next
			// one's.
			select {
			case c.p.dtlsIn <- r:
			default:
			}
			return 0, nil, net.ErrClosed
		default:
		}
		return copy(b, r), net.UDPAddrFromAddrPort(c.to), nil
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.p.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *webDTLSConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	return c.p.conn.WriteToUDPAddrPort(b, c.to)
}
func (c *webDTLSConn) Close() error                      { c.once.Do(func() { close(c.closed) }); return nil }
func (c *webDTLSConn) LocalAddr() net.Addr               { return c.p.conn.LocalAddr() }
func (c *webDTLSConn) SetDeadline(t time.Time) error     { return c.SetReadDeadline(t) }
func (c *webDTLSConn) SetReadDeadline(t time.Time) error { c.rd.Set(t); return nil }
func (c *webDTLSConn) SetWriteDeadline(time.Time) error  { return nil }

// sendRTP encrypts an RTP packet with the peer's exported key and sends
// it to the gateway.
func (p *webPeer) sendRTP(t *testing.T, to netip.AddrPort, pt uint8, ssrc uint32, seq uint16, payload []byte) {
	t.Helper()
	pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc, Timestamp: uint32(seq) * 960},
		Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := p.enc.EncryptRTP(nil, pkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(ct, to); err != nil {
		t.Fatal(err)
	}
}

// recvRTP returns the next SRTP packet from the gateway, decrypted.
func (p *webPeer) recvRTP(t *testing.T) *rtp.Packet {
	t.Helper()
	select {
	case b := <-p.srtpIn:
		plain, err := p.dec.DecryptRTP(nil, b, nil)
		if err != nil {
			t.Fatalf("a packet from the gateway does not open with the DTLS key: %v", err)
		}
		var r rtp.Packet
		if err := r.Unmarshal(plain); err != nil {
			t.Fatal(err)
		}
		return &r
	case <-time.After(3 * time.Second):
		t.Fatal("nothing arrived at the browser side")
	}
	return nil
}

// sipRTP sends an SRTP packet from a SIP endpoint with its key.
func sipRTP(t *testing.T, e *ngEnd, to netip.AddrPort, pt uint8, ssrc uint32, seq uint16, payload []byte) {
	t.Helper()
	ctx, err := e.key.Context()
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc}, Payload: payload}).Marshal()
	ct, err := ctx.EncryptRTP(nil, pkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.WriteToUDPAddrPort(ct, to); err != nil {
		t.Fatal(err)
	}
}

// sipRecv reads the next packet at SIP endpoint e and opens it with the
// gateway's key toward e (dec keeps the ROC across packets).
func sipRecv(t *testing.T, e *ngEnd, dec *srtp.Context) *rtp.Packet {
	t.Helper()
	buf := make([]byte, 2048)
	_ = e.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := e.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("nothing arrived at the SIP endpoint %s: %v", e.addr(), err)
	}
	plain, err := dec.DecryptRTP(nil, buf[:n], nil)
	if err != nil {
		t.Fatalf("a packet at %s does not open with the gateway's key toward it: %v", e.addr(), err)
	}
	var r rtp.Packet
	if err := r.Unmarshal(plain); err != nil {
		t.Fatal(err)
	}
	return &r
}

// sdpOf parses a reply's SDP.
func sdpOf(t *testing.T, d ng.Dict) *ng.SDP {
	t.Helper()
	s, err := ng.ParseSDP([]byte(d.Str("sdp")))
	if err != nil {
		t.Fatalf("reply SDP: %v\n%s", err, d.Str("sdp"))
	}
	return s
}

// docWebRTCFlags returns the flags of the Kamailio calls in docs/ng.md's
// WebRTC example, in order (browser → SIP offer and answer, SIP →
// browser offer and answer), as the ng dictionaries Kamailio's rtpengine
// module sends for them.
func docWebRTCFlags(t *testing.T) []map[string]any {
	t.Helper()
	doc, err := os.ReadFile("../docs/ng.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```kamailio-webrtc\n")
	if !ok {
		t.Fatal("docs/ng.md has no ```kamailio-webrtc block")
	}
	block, _, _ = strings.Cut(block, "```")
	var out []map[string]any
	for _, m := range regexp.MustCompile(`rtpengine_(?:offer|answer)\("([^"]*)"\)`).FindAllStringSubmatch(block, -1) {
		out = append(out, kamailioFlags(t, m[1]))
	}
	if len(out) != 4 {
		t.Fatalf("%d rtpengine calls in the WebRTC example, want 4", len(out))
	}
	return out
}

// kamailioFlags turns a Kamailio rtpengine flags string into the ng
// dictionary entries the module sends for it (the tokens the example
// uses).
func kamailioFlags(t *testing.T, s string) map[string]any {
	t.Helper()
	d := map[string]any{}
	add := func(k, v string) {
		l, _ := d[k].([]any)
		d[k] = append(l, v)
	}
	for _, tok := range strings.Fields(s) {
		switch k, v, kv := strings.Cut(tok, "="); {
		case ng.ValidProto(tok):
			d["transport-protocol"] = tok
		case kv:
			d[k] = v
		case strings.HasPrefix(tok, "rtcp-mux-"):
			add("rtcp-mux", strings.TrimPrefix(tok, "rtcp-mux-"))
		case strings.HasPrefix(tok, "SDES-"):
			add("SDES", strings.TrimPrefix(tok, "SDES-"))
		case strings.HasPrefix(tok, "replace-"):
			add("replace", strings.TrimPrefix(tok, "replace-"))
		default:
			t.Fatalf("flag %q: not one the example should use", tok)
		}
	}
	return d
}
