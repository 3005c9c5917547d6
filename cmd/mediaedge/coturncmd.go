package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mediaedge/mediaedge/relay"
)

// Names of the secret files import-coturn writes.
const (
	coturnUsersName  = "turn-users"
	coturnSecretName = "turn-secret"
)

func newImportCoturnCmd() *cobra.Command {
	var (
		output, secretDir, externalIP string
		force                         bool
	)
	cmd := &cobra.Command{
		Use:   "import-coturn FILE",
		Short: "Translate a coturn turnserver.conf into a mediaedge configuration",
		Long: `Translate a coturn turnserver.conf into a mediaedge configuration whose
relay section does what the coturn file did: listeners (listening-ip,
listening-port, tls-listening-port with cert and pkey, no-udp, no-tcp,
no-tls), relay and advertised addresses (relay-ip, external-ip), the port
range, realm, static users (user=), REST secrets (use-auth-secret,
static-auth-secret), peer lists (allowed-peer-ip, denied-peer-ip,
allow-loopback-peers), quotas (total-quota, user-quota) and max-bps.

Every setting that could not be carried over is printed on stderr with its
line number and the reason; notes point out where mediaedge behaves
differently (it refuses private peers unless allowed_peers lists them).

Passwords and secrets are never printed: user= lines go to a users file and
static-auth-secret values to a secret file, both mode 0600, in --secret-dir
(default: the directory of --output, or the current directory), which the
configuration refers to. Check the result with 'mediaedge config check'.`,
		Example: `  mediaedge config import-coturn /etc/turnserver.conf --output /etc/mediaedge/mediaedge.yaml
  mediaedge config import-coturn turnserver.conf --external-ip 203.0.113.7 > mediaedge.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("import-coturn: %w", err)
			}
			dir := secretDir
			if dir == "" {
				dir = "."
				if output != "" {
					dir = filepath.Dir(output)
				}
			}
			// The configuration names the secret files relative to itself
			// when they sit beside it, by absolute path otherwise.
			ref := func(name string) string {
				p := filepath.Join(dir, name)
				if output != "" && filepath.Clean(dir) == filepath.Clean(filepath.Dir(output)) {
					return name
				}
				if abs, err := filepath.Abs(p); err == nil {
					return abs
				}
				return p
			}
			imp, err := relay.ImportCoturn(data, relay.CoturnOptions{
				UsersFile:  ref(coturnUsersName),
				SecretFile: ref(coturnSecretName),
				ExternalIP: externalIP,
				NewSecret:  newRESTSecret,
			})
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			for _, s := range imp.Skipped {
				fmt.Fprintf(stderr, "%s:%d: %s: not carried over: %s\n", args[0], s.Line, s.Key, s.Reason)
			}
			for _, n := range imp.Notes {
				fmt.Fprintf(stderr, "%s: note: %s\n", args[0], n)
			}
			// Refuse before writing anything, so that a refusal never
			// leaves secret files without the configuration naming them.
			if output != "" && !force {
				if _, err := os.Stat(output); err == nil {
					return fmt.Errorf("import-coturn: %s exists (--force overwrites it)", output)
				}
			}
			for _, f := range []struct {
				name string
				data []byte
			}{{coturnUsersName, imp.Users}, {coturnSecretName, imp.Secrets}} {
				if f.data == nil {
					continue
				}
				p := filepath.Join(dir, f.name)
				if err := writeSecret(p, f.data, force); err != nil {
					return err
				}
				fmt.Fprintf(stderr, "%s: wrote %s (mode 0600; chown it to the service user: chown mediaedge %s)\n", args[0], p, p)
			}
			out := coturnConfig(args[0], imp)
			if output == "" {
				_, err := io.WriteString(cmd.OutOrStdout(), out)
				return err
			}
			if err := writeAtomic(output, []byte(out)); err != nil {
				return fmt.Errorf("import-coturn: %w", err)
			}
			fmt.Fprintf(stderr, "%s: wrote %s; %d setting(s) not carried over; check it with: mediaedge config check %s\n",
				args[0], output, len(imp.Skipped), output)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "write the configuration to this file (default: stdout)")
	f.StringVar(&secretDir, "secret-dir", "", "directory for the users and secret files (default: that of --output, or the current one)")
	f.StringVar(&externalIP, "external-ip", "", "address clients are told (relay_address) when the coturn file has no external-ip")
	f.BoolVar(&force, "force", false, "overwrite existing output and secret files")
	return cmd
}

// coturnConfig is the whole configuration file around the relay section.
func coturnConfig(src string, imp *relay.CoturnImport) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# mediaedge configuration imported from %s by
# 'mediaedge config import-coturn'. Settings that were not carried over and
# notes were printed when it ran. Every key is described in docs/relay.md.
log:
  level: info
  format: text
metrics:
  listen: 127.0.0.1:9477
control:
  socket: ""
relay:
`, src)
	b.WriteString(imp.Section)
	b.WriteString("gateway:\n  enabled: false\npolicy:\n  enabled: false\n")
	return b.String()
}

// newRESTSecret returns 32 random bytes, base64: a REST shared secret.
func newRESTSecret() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(k), nil
}

// writeSecret writes data to path with mode 0600, refusing to replace an
// existing file unless force is set.
func writeSecret(path string, data []byte, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("import-coturn: %s exists (--force overwrites it)", path)
	}
	if err != nil {
		return fmt.Errorf("import-coturn: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("import-coturn: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("import-coturn: writing %s: %w", path, err)
	}
	return f.Close()
}
