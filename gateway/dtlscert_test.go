package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
)

func TestParseFingerprint(t *testing.T) {
	c, err := generateDTLSCert()
	if err != nil {
		t.Fatal(err)
	}
	der := c.cert.Certificate[0]
	for _, h := range []string{"sha-1", "sha-256", "sha-384", "sha-512"} {
		fp := fingerprintOf(h, der)
		back, err := ParseFingerprint(strings.ToUpper(fp.Hash) + " " + strings.ToLower(fp.String()[len(h)+1:]))
		if err != nil || !back.matches(der) {
			t.Fatalf("%s: %v, matches %v", h, err, back.matches(der))
		}
	}
	for _, bad := range []string{"", "sha-256", "md5 AB:CD", "sha-256 AB:CD", "sha-256 " + strings.Repeat("ZZ:", 31) + "ZZ",
		"sha-256 " + strings.Repeat("A:", 31) + "AB"} {
		if _, err := ParseFingerprint(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	other, _ := generateDTLSCert()
	if c.fp.matches(other.cert.Certificate[0]) {
		t.Fatal("a fingerprint matches another certificate")
	}
}

// writeCertFiles writes c as PEM files (key mode keyMode) in dir.
func writeCertFiles(t *testing.T, dir string, c *dtlsCert, keyMode os.FileMode) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath = filepath.Join(dir, "dtls.pem"), filepath.Join(dir, "dtls-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(c.cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), keyMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyPath, keyMode); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// dtlsSection decodes a gateway section with a dtls block as the
// configuration loader does, secret files included.
func dtlsSection(dir, yaml string) (Config, error) {
	var sec struct {
		DTLS DTLSConfig `yaml:"dtls"`
	}
	sec.DTLS = defaultDTLS()
	err := config.Decode([]byte(yaml), &sec, config.Options{Dir: dir})
	cfg := testConfig()
	cfg.DTLS = sec.DTLS
	return cfg, err
}

func TestDTLSCertificateFromFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := generateDTLSCert()
	if err != nil {
		t.Fatal(err)
	}
	certPath, _ := writeCertFiles(t, dir, c, 0o600)
	cfg, err := dtlsSection(dir, "dtls:\n  certificate: "+certPath+"\n  private_key: dtls-key.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.DTLSFingerprint().String(); got != c.fp.String() {
		t.Fatalf("fingerprint %s, want the file's %s", got, c.fp)
	}

	// A key others may read is refused by the secret-file checks, and
	// the error names the file, never its contents.
	loose := t.TempDir()
	_, _ = writeCertFiles(t, loose, c, 0o644)
	_, err = dtlsSection(loose, "dtls:\n  certificate: dtls.pem\n  private_key: dtls-key.pem\n")
	if err == nil || !strings.Contains(err.Error(), "accessible by group or others") || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("a 0644 key: %v", err)
	}

	// A key that does not go with the certificate.
	other, _ := generateDTLSCert()
	mixed := t.TempDir()
	writeCertFiles(t, mixed, other, 0o600)
	writeCertFiles(t, t.TempDir(), c, 0o600)
	cp := filepath.Join(mixed, "dtls.pem")
	if err := os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = dtlsSection(mixed, "dtls:\n  certificate: "+cp+"\n  private_key: dtls-key.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, component.Deps{}); err == nil || !strings.Contains(err.Error(), "does not go with") || strings.Contains(err.Error(), "PRIVATE") {
		t.Fatalf("a key of another certificate: %v", err)
	}
}

// TestDTLSCertificateReload: a reload that names other files loads them;
// a reload that changes nothing keeps the certificate.
func TestDTLSCertificateReload(t *testing.T) {
	g := startGateway(t, testConfig())
	first := g.DTLSFingerprint()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Reload(ctx, testConfig()); err != nil {
		t.Fatal(err)
	}
	if g.DTLSFingerprint().String() != first.String() {
		t.Fatal("a reload without certificate files changed the certificate")
	}
	dir := t.TempDir()
	c, _ := generateDTLSCert()
	certPath, _ := writeCertFiles(t, dir, c, 0o600)
	cfg, err := dtlsSection(dir, "dtls:\n  certificate: "+certPath+"\n  private_key: dtls-key.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if g.DTLSFingerprint().String() != c.fp.String() {
		t.Fatal("the reload did not load the certificate files")
	}
	// New legs announce the new certificate.
	web := newDTLSPeer(t)
	info := mustCreate(t, g, CreateRequest{
		Internal: LegRequest{Keying: KeyingDTLS, NoICE: true, Fingerprint: web.cert.fp.String()},
		Cloud:    LegRequest{RTCPMux: true, Crypto: benchKeyLine},
	})
	if info.Internal.DTLS.Fingerprint.String() != c.fp.String() {
		t.Fatalf("new leg announces %s", info.Internal.DTLS.Fingerprint)
	}
	if _, err := web.handshake(info.Internal.Local, true, c.fp, dtlsPeerOpts{}); err != nil {
		t.Fatalf("handshake with the reloaded certificate: %v", err)
	}
}
