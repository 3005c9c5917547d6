package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/config"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// into dir and returns the paths.
func writeCert(t *testing.T, dir string, serial int64) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "turn.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "turn.crt"), filepath.Join(dir, "turn.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func tlsListenerConfig(t *testing.T, certPath, keyPath string) ListenerConfig {
	l := ListenerConfig{Transport: "tls", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("127.0.0.1:0")}, CertFile: certPath}
	l.KeyFile = config.SecretFile{Path: keyPath}
	if err := l.KeyFile.Load(""); err != nil {
		t.Fatal(err)
	}
	return l
}

// serialOf returns the serial of the certificate the relay presents.
func serialOf(t *testing.T, addr netip.AddrPort) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSListenerAndCertificateRenewal(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := writeCert(t, dir, 1)
	cfg := baseConfig(t)
	cfg.Listeners = []ListenerConfig{tlsListenerConfig(t, certPath, keyPath)}
	r := startRelay(t, cfg)
	addr := r.TCPAddrs()[0]
	if got := serialOf(t, addr); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	// An allocation over TLS.
	tc, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr.String(), TURNServerAddr: addr.String(),
		Conn: turn.NewSTUNConn(tc), Username: testUser, Password: testPass, Realm: testRealm, LoggerFactory: quietLogs{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); tc.Close() }()
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	roundTrip(t, rc, peer.LocalAddr(), []byte("over tls"))

	// Renew: new files in place, reload.
	writeCert(t, dir, 2)
	renewed := cfg
	renewed.Listeners = []ListenerConfig{tlsListenerConfig(t, certPath, keyPath)}
	renewed.Listeners[0].Addr = cfg.Listeners[0].Addr
	if err := r.Reload(context.Background(), renewed); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(t, addr); got != 2 {
		t.Fatalf("after reload: serial %d, want 2", got)
	}
	roundTrip(t, rc, peer.LocalAddr(), []byte("still there"))
	if as := r.Allocations(); len(as) != 1 || as[0].Transport != "tls" {
		t.Errorf("allocations after renewal: %+v", as)
	}
}

func TestRelaySocketMark(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Mark = 0x4d45
	s, err := New(cfg, testDeps())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := udpClient(t, s.UDPAddrs()[0], testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip("SO_MARK needs CAP_NET_ADMIN; run as root")
		}
		t.Fatal(err)
	}
	defer rc.Close()
	as := s.Allocations()
	if len(as) != 1 {
		t.Fatalf("%d allocations", len(as))
	}
	s.mu.Lock()
	a := s.allocs[as[0].ID]
	s.mu.Unlock()
	m, err := unix.GetsockoptInt(a.udp.sock.fd, unix.SOL_SOCKET, unix.SO_MARK)
	if err != nil || m != 0x4d45 {
		t.Fatalf("SO_MARK = %#x, %v; want 0x4d45", m, err)
	}
}
