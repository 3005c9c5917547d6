package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// MaxSecretSize bounds what ReadSecretFile reads: a secret is a key or a
// short list of users, never megabytes.
const MaxSecretSize = 1 << 20

// SecretFile is a reference to a file that holds a secret (a TURN shared
// secret, a user list, a bearer token). The main configuration never holds
// the secret itself. Load resolves the path and reads the file with
// permission checks; the contents never appear in String, YAML, JSON or
// error messages.
//
// A relative path is looked up first in $CREDENTIALS_DIRECTORY (systemd
// LoadCredential=), then beside the configuration file.
type SecretFile struct {
	// Path is the reference as written in the configuration.
	Path string
	// Resolved is the file that was read, set by Load.
	Resolved string
	value    []byte
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *SecretFile) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a file path, got a %s", kindName(n))
	}
	if n.Value == "" {
		return errors.New("empty file path")
	}
	*s = SecretFile{Path: n.Value}
	return nil
}

// MarshalYAML implements yaml.Marshaler: only the path is written.
func (s SecretFile) MarshalYAML() (any, error) { return s.Path, nil }

// MarshalJSON writes only the path.
func (s SecretFile) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%q", s.Path), nil
}

// String returns the path, never the contents.
func (s SecretFile) String() string { return s.Path }

// IsSet reports whether a path was given.
func (s SecretFile) IsSet() bool { return s.Path != "" }

// Bytes returns the secret read by Load, with surrounding white space
// removed. The caller must not keep it longer than needed nor log it.
func (s *SecretFile) Bytes() []byte { return s.value }

// Set stores a secret that did not come from a file (generated credentials,
// tests). The path is informational.
func (s *SecretFile) Set(path string, value []byte) {
	s.Path, s.Resolved, s.value = path, path, value
}

// Load resolves and reads the secret file. configDir is the directory of the
// configuration file, used for relative paths.
func (s *SecretFile) Load(configDir string) error {
	if s.Path == "" {
		return nil
	}
	p := ResolveSecretPath(s.Path, configDir)
	b, err := ReadSecretFile(p)
	if err != nil {
		return err
	}
	s.Resolved = p
	s.value = bytes.TrimSpace(b)
	return nil
}

// ResolveSecretPath applies the lookup order of SecretFile to path.
func ResolveSecretPath(path, configDir string) string {
	if filepath.IsAbs(path) {
		return path
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		p := filepath.Join(dir, path)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if configDir == "" {
		configDir = "."
	}
	return filepath.Join(configDir, path)
}

// ReadSecretFile reads a secret from path. It refuses anything but a regular
// file, a file that group or others may access (the message says how to fix
// it), and files larger than MaxSecretSize. The error never contains the
// contents. It never blocks on a special file: opening a FIFO without a
// writer, or a device, could wait forever, so the path is checked first and
// opened with O_NONBLOCK.
func ReadSecretFile(path string) ([]byte, error) {
	// Stat follows symbolic links (a link to a regular file is fine, as
	// systemd credentials and /etc alternatives use them).
	if fi, err := os.Stat(path); err != nil {
		return nil, &SecretError{Path: path, Reason: "cannot be opened", Err: err}
	} else if !fi.Mode().IsRegular() {
		return nil, &SecretError{Path: path, Reason: "is not a regular file"}
	}
	// O_NONBLOCK: the path may have been swapped for a FIFO since Stat;
	// open(2) of a FIFO blocks until a writer appears unless O_NONBLOCK is
	// set, and it has no effect on a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, &SecretError{Path: path, Reason: "cannot be opened", Err: err}
	}
	defer f.Close()
	// Check the opened file, not the path, so a swap between stat and read
	// cannot slip a different file in.
	fi, err := f.Stat()
	if err != nil {
		return nil, &SecretError{Path: path, Reason: "cannot be inspected", Err: err}
	}
	if !fi.Mode().IsRegular() {
		return nil, &SecretError{Path: path, Reason: "is not a regular file"}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, &SecretError{Path: path, Reason: fmt.Sprintf("is accessible by group or others (mode %04o); run: chmod 600 %s", perm, path)}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretSize+1))
	if err != nil {
		return nil, &SecretError{Path: path, Reason: "cannot be read", Err: err}
	}
	if len(b) > MaxSecretSize {
		return nil, &SecretError{Path: path, Reason: fmt.Sprintf("is larger than %d bytes", MaxSecretSize)}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, &SecretError{Path: path, Reason: "is empty"}
	}
	return b, nil
}

// SecretError says why a secret file was refused. It names the file, never
// its contents.
type SecretError struct {
	Path   string
	Reason string
	Err    error
}

func (e *SecretError) Error() string {
	if e.Err != nil {
		var pe *os.PathError
		if errors.As(e.Err, &pe) {
			return fmt.Sprintf("secret file %s %s: %v", e.Path, e.Reason, pe.Err)
		}
		return fmt.Sprintf("secret file %s %s: %v", e.Path, e.Reason, e.Err)
	}
	return fmt.Sprintf("secret file %s %s", e.Path, e.Reason)
}

func (e *SecretError) Unwrap() error { return e.Err }
