package daemon

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// checkProblems writes body to a file in dir and returns what CheckFile
// reports, one string per problem.
func checkProblems(t *testing.T, dir, body string) []string {
	t.Helper()
	path := filepath.Join(dir, "mediaedge.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	err := CheckFile(path, config.Options{})
	if err == nil {
		return nil
	}
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("CheckFile: %v is not config.Problems", err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// writeTestPair writes a self-signed certificate and its key into dir.
func writeTestPair(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "turn.example.net"},
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

// TestCheckOneProblemPerMistake: a bad port in listeners[1] is one
// problem, not three (the rest of the listener decoded fine).
func TestCheckOneProblemPerMistake(t *testing.T) {
	got := checkProblems(t, t.TempDir(), `relay:
  listeners:
    - transport: udp
      addr: 127.0.0.1:3478
    - transport: tcp
      addr: 127.0.0.1:99999
`)
	if len(got) != 1 || !strings.Contains(got[0], "relay.listeners[1].addr: port 99999 out of range") {
		t.Fatalf("want exactly the port problem, got %d:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// TestCheckTLSPair: config check loads a tls listener's certificate and
// key, as run would.
func TestCheckTLSPair(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestPair(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	cert2, _ := writeTestPair(t, other)
	listener := func(c, k string) string {
		return "relay:\n  listeners:\n    - transport: udp\n      addr: 127.0.0.1:3478\n" +
			"    - transport: tls\n      addr: 127.0.0.1:5349\n      cert_file: " + c + "\n      key_file: " + k + "\n"
	}
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"good", cert, key, ""},
		{"missing cert", filepath.Join(dir, "absent.crt"), key, "relay.listeners[1].cert_file: "},
		{"cert not PEM", notPEM, key, "relay.listeners[1].cert_file: "},
		{"key not PEM", cert, notPEM, "relay.listeners[1].key_file: "},
		{"key of another cert", cert2, key, "relay.listeners[1].key_file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkProblems(t, dir, listener(tc.cert, tc.key))
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("want no problem, got:\n%s", strings.Join(got, "\n"))
				}
				return
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Fatalf("want one problem starting %q, got %d:\n%s", tc.want, len(got), strings.Join(got, "\n"))
			}
			t.Log(got[0])
		})
	}
}

// TestConfigEndpointJSON: GET /v1/config answers JSON like the rest of the
// API (with the file's key names), and YAML when asked.
func TestConfigEndpointJSON(t *testing.T) {
	d, err := New(testConfig(t, t.TempDir()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, target, accept, wantType string
	}{
		{"default", "/v1/config", "", "application/json"},
		{"accept json", "/v1/config", "application/json", "application/json"},
		{"accept yaml", "/v1/config", "application/yaml", "application/yaml"},
		{"format yaml", "/v1/config?format=yaml", "", "application/yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.target, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			rec := httptest.NewRecorder()
			d.serveConfig(rec, req)
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.wantType) {
				t.Fatalf("Content-Type %q, want %s", ct, tc.wantType)
			}
			body := rec.Body.Bytes()
			if tc.wantType == "application/yaml" {
				if !bytes.Contains(body, []byte("\nrelay:\n")) {
					t.Fatalf("not the YAML configuration:\n%s", body)
				}
				return
			}
			var got struct {
				Relay struct {
					Realm     string `json:"realm"`
					Listeners []struct {
						Transport string `json:"transport"`
						Addr      string `json:"addr"`
					} `json:"listeners"`
				} `json:"relay"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("not JSON: %v\n%.300s", err, body)
			}
			if got.Relay.Realm != "mediaedge.local" || len(got.Relay.Listeners) == 0 || got.Relay.Listeners[0].Addr == "" {
				t.Fatalf("JSON keys differ from the file's: %+v\n%.300s", got, body)
			}
		})
	}
}

// TestMetricsPresentFromStart: /metrics carries mediaedge_build_info, and
// the relay's allocation gauge reads 0 before the first allocation instead
// of being absent.
func TestMetricsPresentFromStart(t *testing.T) {
	cfg, err := Load("", config.Options{}) // the embedded default: relay enabled
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := d.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			found[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = strconv.FormatFloat(v, 'g', -1, 64)
		}
	}
	var bi []string
	for k, v := range found {
		if strings.HasPrefix(k, "mediaedge_build_info{") {
			bi = append(bi, k+" "+v)
		}
	}
	if len(bi) != 1 || !strings.Contains(bi[0], "version=") || !strings.Contains(bi[0], "goversion=go") || !strings.HasSuffix(bi[0], " 1") {
		t.Errorf("mediaedge_build_info: %q", bi)
	}
	for _, k := range []string{
		`mediaedge_relay_allocations_active{relay=udp,transport=udp}`,
		`mediaedge_relay_allocations_active{relay=udp,transport=tcp}`,
	} {
		if v, ok := found[k]; !ok || v != "0" {
			t.Errorf("%s = %q (present %v), want 0", k, v, ok)
		}
	}
}

// TestTrialAdmitsLoopbackPeers: the embedded default run without a file
// admits loopback peers (bench turn against make run); the same text as a
// file does not (a production copy stays deny-by-default).
func TestTrialAdmitsLoopbackPeers(t *testing.T) {
	hasLoopback := func(c Config) bool {
		for _, p := range c.Relay.AllowedPeers {
			if p.Contains(netip.MustParseAddr("127.0.0.1")) {
				return true
			}
		}
		return false
	}
	trial, err := Load("", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !trial.Trial || !hasLoopback(trial) {
		t.Errorf("embedded default: trial %v, allowed_peers %v: loopback peers not admitted", trial.Trial, trial.Relay.AllowedPeers)
	}
	path := filepath.Join(t.TempDir(), "mediaedge.yaml")
	if err := os.WriteFile(path, []byte(DefaultYAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if file.Trial || hasLoopback(file) {
		t.Errorf("config file: trial %v, allowed_peers %v: a file must stay deny-by-default", file.Trial, file.Relay.AllowedPeers)
	}
}
