package gateway

import (
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// DTLSConfig is the `gateway.dtls` section: how legs keyed with DTLS-SRTP
// (RFC 5763/5764, WebRTC endpoints) are terminated.
type DTLSConfig struct {
	// Certificate is a PEM certificate file; empty: a self-signed ECDSA
	// P-256 certificate is generated at start (and on each reload that
	// changes this section). Re-read on reload.
	Certificate string `yaml:"certificate"`
	// PrivateKey is the PEM private key of Certificate (mode 0600, read
	// with the secret-file checks).
	PrivateKey config.SecretFile `yaml:"private_key"`
	// Profiles are the DTLS-SRTP protection profiles the gateway accepts
	// (use_srtp), in order of preference.
	Profiles []string `yaml:"profiles"`
	// Setup is the gateway's role when the peer offers a=setup:actpass:
	// "passive" (the peer connects: DTLS server) or "active" (DTLS client).
	Setup string `yaml:"setup"`
	// HandshakeTimeout ends a handshake that has not completed in this
	// long; the leg's state becomes failed.
	HandshakeTimeout config.Duration `yaml:"handshake_timeout"`
	// MaxHandshakes bounds the handshakes in progress at once, across all
	// sessions; a handshake over the bound waits for the peer's
	// retransmission (passive) or the next second (active).
	MaxHandshakes int `yaml:"max_handshakes"`
	// QueueLen bounds the DTLS records waiting for one leg's handshake;
	// more are dropped and counted (dtls_queue_full).
	QueueLen int `yaml:"queue_len"`
}

// defaultDTLS returns the DTLS defaults.
func defaultDTLS() DTLSConfig {
	return DTLSConfig{
		Profiles:         DTLSProfileNames(),
		Setup:            string(DTLSPassive),
		HandshakeTimeout: config.Duration(10 * time.Second),
		MaxHandshakes:    500,
		QueueLen:         32,
	}
}

func (c *DTLSConfig) validate() error {
	var ps config.Problems
	if c.Certificate == "" && c.PrivateKey.IsSet() {
		ps.Add("certificate", "required with private_key")
	}
	if c.Certificate != "" && !c.PrivateKey.IsSet() {
		ps.Add("private_key", "required with certificate")
	}
	if len(c.Profiles) == 0 {
		ps.Add("profiles", "empty: list at least one of %v", DTLSProfileNames())
	}
	for i, p := range c.Profiles {
		if lookupDTLSProfile(p) == nil {
			ps.Add(config.Index("profiles", i), "unknown profile %q (known: %v)", p, DTLSProfileNames())
		}
	}
	switch DTLSRole(c.Setup) {
	case DTLSActive, DTLSPassive:
	default:
		ps.Add("setup", "%q: want %q or %q", c.Setup, DTLSActive, DTLSPassive)
	}
	if d := c.HandshakeTimeout.D(); d < 100*time.Millisecond || d > 5*time.Minute {
		ps.Add("handshake_timeout", "%s: want 100ms to 5m", d)
	}
	if c.MaxHandshakes < 1 || c.MaxHandshakes > 100_000 {
		ps.Add("max_handshakes", "%d: want 1 to 100000", c.MaxHandshakes)
	}
	if c.QueueLen < 4 || c.QueueLen > 4096 {
		ps.Add("queue_len", "%d: want 4 to 4096", c.QueueLen)
	}
	// Load the pair as New would, so that `config check` catches a
	// missing or mismatched pair before `run`; the key is checked only
	// when it was loaded (not with SkipSecrets).
	if c.Certificate != "" && c.PrivateKey.Bytes() != nil {
		if _, err := loadDTLSCert(c); err != nil {
			ps.Add("certificate", "%s", strings.TrimPrefix(err.Error(), "gateway: "))
		}
	}
	return ps.Err()
}
