package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/config"
)

// opsCLI runs the command in-process and returns stdout and stderr.
func opsCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&out, &errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// lineOf returns the 1-based line of the first line of data that starts
// with key.
func lineOf(t *testing.T, data []byte, key string) int {
	t.Helper()
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, key) {
			return i + 1
		}
	}
	t.Fatalf("no line starts with %q", key)
	return 0
}

// TestImportCoturnDebian imports the turnserver.conf Debian's coturn
// package ships: the result passes config check, and every active setting
// of the file is either carried over or reported with its line.
func TestImportCoturnDebian(t *testing.T) {
	src := "testdata/coturn/debian-turnserver.conf"
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "mediaedge.yaml")
	_, stderr, err := opsCLI(t, "config", "import-coturn", src, "--output", out)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	if err := daemon.CheckFile(out, config.Options{}); err != nil {
		t.Fatalf("config check of the import:\n%v", err)
	}
	if want := fmt.Sprintf("%s:%d: syslog: not carried over", src, lineOf(t, data, "syslog")); !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	for _, want := range []string{"relay_address is the placeholder 192.0.2.1", "a REST secret was generated"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks the note %q", want)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "turn-secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file: %v %v, want mode 0600", err, fi)
	}
	// A second import does not overwrite the secret without --force.
	if _, _, err := opsCLI(t, "config", "import-coturn", src, "--output", filepath.Join(dir, "again.yaml")); err == nil {
		t.Error("a second import replaced the secret file without --force")
	}
}

// TestImportCoturnProduction imports a realistic hand-written coturn file
// and checks each translated setting, every reported one, and that no
// password or secret reaches stdout, stderr or the configuration.
func TestImportCoturnProduction(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	tmpl, err := os.ReadFile("testdata/coturn/production-turnserver.conf")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.ReplaceAll(bytes.ReplaceAll(tmpl, []byte("CERTFILE"), []byte(certFile)), []byte("KEYFILE"), []byte(keyFile))
	src := filepath.Join(dir, "turnserver.conf")
	writeFile(t, src, string(data), 0o600)
	out := filepath.Join(dir, "mediaedge.yaml")
	stdout, stderr, err := opsCLI(t, "config", "import-coturn", src, "-o", out)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	yml, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"Zm9vYmFyLXJlc3Qtc2VjcmV0LWZvci10ZXN0cw", "monitor-password-1", "7f6a1d6e5e0c4a8b9d3c2b1a00112233", "qwerty-cli-secret"} {
		for name, s := range map[string]string{"stdout": stdout, "stderr": stderr, "configuration": string(yml)} {
			if strings.Contains(s, secret) {
				t.Errorf("%s holds a secret (%.6s...)", name, secret)
			}
		}
	}
	cfg, err := daemon.Load(out, config.Options{})
	if err != nil {
		t.Fatalf("config check of the import:\n%v\n%s", err, yml)
	}
	r := cfg.Relay
	var listeners []string
	for _, l := range r.Listeners {
		listeners = append(listeners, string(l.Transport)+" "+l.Addr.String())
	}
	if want := []string{"udp 10.20.0.1:3478", "tcp 10.20.0.1:3478", "tls 10.20.0.1:443"}; !slices.Equal(listeners, want) {
		t.Errorf("listeners %v, want %v", listeners, want)
	}
	for _, c := range []struct{ name, got, want string }{
		{"realm", r.Realm, "turn.example.com"},
		{"relay_ip", r.RelayIP, "10.20.0.1"},
		{"relay_address", r.RelayAddress, "203.0.113.7"},
		{"ports", r.Ports.String(), "40000-49999"},
		{"users", string(r.Auth.UsersFile.Bytes()), "monitor:monitor-password-1\nprobe:0x7f6a1d6e5e0c4a8b9d3c2b1a00112233"},
		{"secret", string(r.Auth.SecretFiles[0].Bytes()), "Zm9vYmFyLXJlc3Qtc2VjcmV0LWZvci10ZXN0cw"},
		{"quotas", fmt.Sprint(r.Limits.MaxAllocations, r.Limits.MaxAllocationsPerUser), "2000 12"},
		{"bitrate", fmt.Sprint(int64(r.Limits.BitratePerAllocation)), "2000000"},
		{"tls key", r.Listeners[2].KeyFile.Path, keyFile},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	prefixes := func(ps []config.Prefix) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.String())
		}
		slices.Sort(out)
		return out
	}
	if got, want := prefixes(r.DeniedPeers), []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}; !slices.Equal(got, want) {
		t.Errorf("denied_peers %v, want %v", got, want)
	}
	if got, want := prefixes(r.AllowedPeers), []string{"10.20.5.0/24", "10.30.0.1/32"}; !slices.Equal(got, want) {
		t.Errorf("allowed_peers %v, want %v", got, want)
	}
	for _, key := range []string{"bps-capacity", "stale-nonce", "cipher-list", "no-tcp-relay", "cli-password", "mobility",
		"log-file", "simple-log", "pidfile", "proc-user", "proc-group", "prometheus"} {
		want := fmt.Sprintf("%s:%d: %s: not carried over: ", src, lineOf(t, data, key), key)
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	for _, key := range []string{"fingerprint", "lt-cred-mech", "no-tlsv1", "no-dtls", "no-cli", "no-multicast-peers"} {
		if strings.Contains(stderr, ": "+key+": not carried") {
			t.Errorf("%s reported as not carried over, though mediaedge always behaves so", key)
		}
	}
	// Credentials minted from the imported secret are accepted by the
	// configuration it produced.
	credOut, _, err := opsCLI(t, "turn", "credentials", "--user", "alice", "--config", out)
	if err != nil || !strings.Contains(credOut, "username: ") {
		t.Errorf("turn credentials with the imported configuration: %v %s", err, credOut)
	}
}

// writeTestCert writes a self-signed certificate and its key (mode 0600)
// into dir and returns their paths.
func writeTestCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "turn.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"turn.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "turn.crt"), filepath.Join(dir, "turn.key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})), 0o600)
	return certFile, keyFile
}

// TestImportCoturnRefusesExistingOutputFirst: when the output exists (as
// after make install) and --force is not given, the import refuses before
// it writes a users or secret file, so nothing is left half done.
func TestImportCoturnRefusesExistingOutputFirst(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "turnserver.conf")
	writeFile(t, src, "realm=example.org\nuse-auth-secret\nstatic-auth-secret=not-a-real-secret-0123456789\nuser=alice:secret-password\n", 0o600)
	out := filepath.Join(dir, "mediaedge.yaml")
	writeFile(t, out, "# an existing configuration\n", 0o640)
	_, _, err := opsCLI(t, "config", "import-coturn", src, "-o", out)
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("import over an existing output: %v, want a refusal", err)
	}
	for _, name := range []string{coturnUsersName, coturnSecretName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("the refused import wrote %s", name)
		}
	}
	if b, _ := os.ReadFile(out); string(b) != "# an existing configuration\n" {
		t.Errorf("the refused import changed %s: %q", out, b)
	}
}
