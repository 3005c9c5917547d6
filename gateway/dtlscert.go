package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // a=fingerprint hash of old peers (RFC 4572), never for integrity
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"os"
	"strings"
	"time"
)

// Fingerprint is a certificate fingerprint as SDP's a=fingerprint carries
// it (RFC 8122): a hash function name and the digest of the DER
// certificate. Fingerprints are public; a Fingerprint is an immutable value.
type Fingerprint struct {
	// Hash is the lower-case hash name: sha-1, sha-256, sha-384 or sha-512.
	Hash string
	// Digest is the hash of the certificate.
	Digest []byte
}

// fingerprintHashes are the a=fingerprint hash functions mediaedge can
// verify.
var fingerprintHashes = map[string]func() hash.Hash{
	"sha-1":   sha1.New,
	"sha-256": sha256.New,
	"sha-384": sha512.New384,
	"sha-512": sha512.New,
}

// ParseFingerprint parses the value of an a=fingerprint attribute,
// "sha-256 AB:CD:...". The hash name is case-insensitive.
func ParseFingerprint(s string) (Fingerprint, error) {
	name, hexs, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return Fingerprint{}, fmt.Errorf("%q: want \"sha-256 AB:CD:...\"", clip(s))
	}
	name = strings.ToLower(name)
	h := fingerprintHashes[name]
	if h == nil {
		return Fingerprint{}, fmt.Errorf("hash %q: want sha-1, sha-256, sha-384 or sha-512", clip(name))
	}
	hexs = strings.TrimSpace(hexs)
	parts := strings.Split(hexs, ":")
	if len(parts) != h().Size() {
		return Fingerprint{}, fmt.Errorf("%s fingerprint: want %d colon-separated bytes, got %d", name, h().Size(), len(parts))
	}
	d := make([]byte, len(parts))
	for i, p := range parts {
		if len(p) != 2 {
			return Fingerprint{}, fmt.Errorf("%s fingerprint: byte %d is not two hex digits", name, i+1)
		}
		b, err := hex.DecodeString(p)
		if err != nil {
			return Fingerprint{}, fmt.Errorf("%s fingerprint: byte %d is not two hex digits", name, i+1)
		}
		d[i] = b[0]
	}
	return Fingerprint{Hash: name, Digest: d}, nil
}

// String formats f as a=fingerprint writes it: "sha-256 AB:CD:...".
func (f Fingerprint) String() string {
	if f.Hash == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString(f.Hash)
	b.WriteByte(' ')
	for i, c := range f.Digest {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler (JSON strings).
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (clients of the API).
func (f *Fingerprint) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*f = Fingerprint{}
		return nil
	}
	x, err := ParseFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = x
	return nil
}

// matches reports whether der, a DER certificate, has fingerprint f.
func (f Fingerprint) matches(der []byte) bool {
	h := fingerprintHashes[f.Hash]
	if h == nil {
		return false
	}
	x := h()
	x.Write(der)
	return subtle.ConstantTimeCompare(x.Sum(nil), f.Digest) == 1
}

// fingerprintOf returns the fingerprint of DER certificate der with the
// named hash.
func fingerprintOf(hashName string, der []byte) Fingerprint {
	x := fingerprintHashes[hashName]()
	x.Write(der)
	return Fingerprint{Hash: hashName, Digest: x.Sum(nil)}
}

// dtlsCert is the gateway's DTLS certificate and its SHA-256 fingerprint.
// Immutable once built; the private key inside never leaves the process
// and is never formatted.
type dtlsCert struct {
	cert tls.Certificate
	fp   Fingerprint
	// file says where it came from ("" for a generated one).
	file string
}

// certLifetime is the validity of a generated certificate. WebRTC peers
// check the fingerprint, not the dates; a month covers any session.
const certLifetime = 30 * 24 * time.Hour

// generateDTLSCert returns a fresh self-signed ECDSA P-256 certificate.
func generateDTLSCert() (*dtlsCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("gateway: generating the DTLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("gateway: generating the DTLS certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "mediaedge"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("gateway: creating the DTLS certificate: %w", err)
	}
	return &dtlsCert{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		fp: fingerprintOf("sha-256", der)}, nil
}

// loadDTLSCert builds the gateway's certificate from the configuration:
// the files when given (the private key was read by the configuration
// loader with the secret-file checks), else a generated one.
func loadDTLSCert(c *DTLSConfig) (*dtlsCert, error) {
	if c.Certificate == "" {
		return generateDTLSCert()
	}
	certPEM, err := os.ReadFile(c.Certificate)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("gateway: dtls.certificate %s cannot be read: %w", c.Certificate, err)
	}
	key := c.PrivateKey.Bytes()
	if key == nil {
		return nil, fmt.Errorf("gateway: dtls.private_key %s was not loaded", c.PrivateKey)
	}
	pair, err := tls.X509KeyPair(certPEM, key)
	if err != nil {
		// crypto/tls errors name no key material.
		return nil, fmt.Errorf("gateway: dtls.private_key %s does not go with dtls.certificate %s: %w", c.PrivateKey, c.Certificate, err)
	}
	return &dtlsCert{cert: pair, fp: fingerprintOf("sha-256", pair.Certificate[0]), file: c.Certificate}, nil
}

// DTLSFingerprint returns the SHA-256 fingerprint of the gateway's current
// DTLS certificate, for a=fingerprint. Safe for concurrent use; after a
// reload that changed the certificate, new legs use the new one.
func (g *Gateway) DTLSFingerprint() Fingerprint {
	return g.dtlsCert.Load().fp
}

// reloadDTLSCert replaces the certificate when the dtls section's
// certificate files changed (or were given or removed): re-read from the
// files, or generated anew. Existing transports keep the certificate they
// started with.
func (g *Gateway) reloadDTLSCert(old, cfg *Config) error {
	o, n := &old.DTLS, &cfg.DTLS
	if o.Certificate == n.Certificate && o.PrivateKey.Path == n.PrivateKey.Path && n.Certificate == "" {
		return nil
	}
	cert, err := loadDTLSCert(n)
	if err != nil {
		return err
	}
	g.dtlsCert.Store(cert)
	g.log.Info("DTLS certificate loaded", "file", cert.file, "fingerprint", cert.fp.String())
	return nil
}
