package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig is a configuration for tests: loopback, ephemeral ports
// (range 0-0, which Validate refuses but the gateway accepts), every suite.
func testConfig() Config {
	c := DefaultConfig()
	c.Workers = 2
	for _, l := range []*LegConfig{&c.Internal, &c.Cloud} {
		l.Ports = config.PortRange{}
		l.Suites = SuiteNames()[:6]
	}
	return c
}

// startGateway starts a gateway for cfg and stops it at the end of the test.
func startGateway(t testing.TB, cfg Config) *Gateway {
	t.Helper()
	g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// newKeyLine returns a random a=crypto line for suite and its decoded key.
func newKeyLine(t testing.TB, suite *Suite) string {
	t.Helper()
	raw := make([]byte, suite.KeyLen+suite.SaltLen)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return "a=crypto:1 " + suite.Name + " inline:" + base64.StdEncoding.EncodeToString(raw)
}

// contextFor builds a pion context from an a=crypto line (first key).
func contextFor(t testing.TB, line string, inbound bool) *srtp.Context {
	t.Helper()
	c, err := ParseCrypto(line)
	if err != nil {
		t.Fatalf("parsing %s: %v", c.Redacted(), err)
	}
	k := c.Keys[0]
	var opts []srtp.ContextOption
	if inbound {
		opts = append(opts, srtp.SRTPReplayProtection(256), srtp.SRTCPReplayProtection(256))
	}
	if k.MKI != nil {
		opts = append(opts, srtp.MasterKeyIndicator(k.MKI))
	}
	ctx, err := srtp.CreateContext(k.Key, k.Salt, c.Suite.Profile, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

// peer is one endpoint of a test call: a UDP socket on loopback.
type peer struct {
	t    testing.TB
	conn *net.UDPConn
}

func newPeer(t testing.TB) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c}
}

func (p *peer) addr() string { return p.conn.LocalAddr().String() }

func (p *peer) send(to string, b []byte) {
	p.t.Helper()
	a, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDP(b, a); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next datagram, or nil after timeout.
func (p *peer) recv(timeout time.Duration) ([]byte, netip.AddrPort) {
	p.t.Helper()
	buf := make([]byte, 2048)
	_ = p.conn.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, netip.AddrPort{}
		}
		p.t.Fatal(err)
	}
	return buf[:n], from
}

// expectNothing fails if a datagram arrives within d.
func (p *peer) expectNothing(d time.Duration) {
	p.t.Helper()
	if b, from := p.recv(d); b != nil {
		p.t.Fatalf("unexpected %d-byte datagram from %s", len(b), from)
	}
}

// rtpPacket marshals an RTP packet with a recognisable payload.
func rtpPacket(t testing.TB, ssrc uint32, seq uint16, size int) []byte {
	t.Helper()
	pay := make([]byte, size)
	for i := range pay {
		pay[i] = byte(int(seq) + i*7)
	}
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq,
		Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: pay}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rtcpPacket(t testing.TB, ssrc uint32, n uint32) []byte {
	t.Helper()
	b, err := (&rtcp.SenderReport{SSRC: ssrc, NTPTime: uint64(n) << 32, RTPTime: n * 160, PacketCount: n, OctetCount: n * 160}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encRTP(t testing.TB, ctx *srtp.Context, plain []byte) []byte {
	t.Helper()
	out, err := ctx.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func encRTCP(t testing.TB, ctx *srtp.Context, plain []byte) []byte {
	t.Helper()
	out, err := ctx.EncryptRTCP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustRecvRTP waits for an SRTP packet and decrypts it with ctx; it fails
// unless the plain packet equals want.
func mustRecvRTP(t testing.TB, p *peer, ctx *srtp.Context, want []byte) []byte {
	t.Helper()
	b, _ := p.recv(2 * time.Second)
	if b == nil {
		t.Fatal("no packet arrived")
	}
	got, err := ctx.DecryptRTP(nil, b, nil)
	if err != nil {
		t.Fatalf("decrypting what arrived: %v", err)
	}
	if want != nil && !bytes.Equal(got, want) {
		t.Fatalf("payload differs:\n got %x\nwant %x", got, want)
	}
	return b
}

func mustRecvRTCP(t testing.TB, p *peer, ctx *srtp.Context, want []byte) []byte {
	t.Helper()
	b, _ := p.recv(2 * time.Second)
	if b == nil {
		t.Fatal("no RTCP packet arrived")
	}
	got, err := ctx.DecryptRTCP(nil, b, nil)
	if err != nil {
		t.Fatalf("decrypting the RTCP that arrived: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("RTCP differs:\n got %x\nwant %x", got, want)
	}
	return b
}

func mustCreate(t testing.TB, g *Gateway, req CreateRequest) *SessionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := g.Create(ctx, req)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return info
}

func mustShow(t testing.TB, g *Gateway, id string) *SessionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := g.Session(ctx, id)
	if err != nil {
		t.Fatalf("show: %v", err)
	}
	return info
}

func haveTool(t testing.TB, name string) {
	t.Helper()
	for _, dir := range []string{"/usr/bin", "/usr/local/bin", "/bin"} {
		if _, err := os.Stat(dir + "/" + name); err == nil {
			return
		}
	}
	t.Skipf("%s is not installed (apt-get install the Debian package that provides it)", name)
}
