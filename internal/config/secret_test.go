package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeSecret(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadSecretFilePermissions(t *testing.T) {
	dir := t.TempDir()
	const secret = "correct-horse-battery-staple"
	tests := []struct {
		mode    os.FileMode
		wantErr string
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, "is accessible by group or others (mode 0640); run: chmod 600"},
		{0o604, "is accessible by group or others (mode 0604)"},
		{0o620, "is accessible by group or others (mode 0620)"},
		{0o644, "is accessible by group or others (mode 0644)"},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			p := writeSecret(t, dir, "s"+tc.mode.String(), secret, tc.mode)
			b, err := ReadSecretFile(p)
			if tc.wantErr == "" {
				if err != nil || string(b) != secret {
					t.Fatalf("ReadSecretFile = %q, %v", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatal("error message contains the secret")
			}
			var se *SecretError
			if !errors.As(err, &se) || se.Path != p {
				t.Fatalf("err is not a *SecretError for %s: %#v", p, err)
			}
		})
	}
}

func TestReadSecretFileRefusals(t *testing.T) {
	dir := t.TempDir()
	empty := writeSecret(t, dir, "empty", " \n", 0o600)
	big := writeSecret(t, dir, "big", strings.Repeat("x", MaxSecretSize+1), 0o600)
	for name, tc := range map[string]struct{ path, want string }{
		"directory": {dir, "is not a regular file"},
		"empty":     {empty, "is empty"},
		"too large": {big, "is larger than"},
		"missing":   {filepath.Join(dir, "nope"), "cannot be opened: no such file or directory"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadSecretFile(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSecretFileCredentialsDirectory(t *testing.T) {
	creds, confDir := t.TempDir(), t.TempDir()
	writeSecret(t, creds, "turn-secret", "from-credentials", 0o400)
	writeSecret(t, confDir, "turn-secret", "from-config-dir", 0o600)
	writeSecret(t, confDir, "other", "only-beside-config", 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", creds)

	s := SecretFile{Path: "turn-secret"}
	if err := s.Load(confDir); err != nil {
		t.Fatal(err)
	}
	if string(s.Bytes()) != "from-credentials" || s.Resolved != filepath.Join(creds, "turn-secret") {
		t.Errorf("credential not preferred: %q from %s", s.Bytes(), s.Resolved)
	}
	o := SecretFile{Path: "other"}
	if err := o.Load(confDir); err != nil {
		t.Fatal(err)
	}
	if string(o.Bytes()) != "only-beside-config" {
		t.Errorf("fallback beside the config: %q", o.Bytes())
	}
	abs := SecretFile{Path: filepath.Join(confDir, "turn-secret")}
	if err := abs.Load("/elsewhere"); err != nil || string(abs.Bytes()) != "from-config-dir" {
		t.Errorf("absolute path: %q, %v", abs.Bytes(), err)
	}
}

func TestSecretFileNeverPrintsContents(t *testing.T) {
	var s SecretFile
	s.Set("/etc/mediaedge/secret", []byte("topsecret"))
	y, _ := s.MarshalYAML()
	j, _ := s.MarshalJSON()
	for _, out := range []string{s.String(), y.(string), string(j)} {
		if strings.Contains(out, "topsecret") {
			t.Errorf("contents leaked: %q", out)
		}
	}
}

// TestReadSecretFileSpecialFiles checks that a FIFO (without a writer, so
// that opening it would block), a symbolic link to one and a character
// device are refused at once with the usual message, and that a link to a
// regular file is read. Before the fix the FIFO blocked open(2) forever.
func TestReadSecretFileSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	good := writeSecret(t, dir, "good", "s3cret-value", 0o600)
	goodLink := filepath.Join(dir, "link-to-good")
	if err := os.Symlink(good, goodLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"fifo", fifo, "is not a regular file"},
		{"link to a fifo", link, "is not a regular file"},
		{"character device", "/dev/null", "is not a regular file"},
		{"link to a regular file", goodLink, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				b   []byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				b, err := ReadSecretFile(tc.path)
				done <- result{b, err}
			}()
			var res result
			select {
			case res = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("ReadSecretFile(%s) blocked", tc.path)
			}
			if tc.want == "" {
				if res.err != nil || string(res.b) != "s3cret-value" {
					t.Fatalf("got %q, %v", res.b, res.err)
				}
				return
			}
			if res.err == nil || !strings.Contains(res.err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", res.err, tc.want)
			}
		})
	}
}
