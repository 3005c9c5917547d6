package daemon

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/logging"
	"github.com/mediaedge/mediaedge/policy"
	"github.com/mediaedge/mediaedge/relay"
)

//go:embed default.yaml
var baseYAML string

// Config is the whole configuration file: one section per component.
type Config struct {
	Log     logging.Config `yaml:"log"`
	Metrics MetricsConfig  `yaml:"metrics"`
	Control ControlConfig  `yaml:"control"`
	Relay   relay.Config   `yaml:"relay"`
	Gateway gateway.Config `yaml:"gateway"`
	Policy  policy.Config  `yaml:"policy"`

	// Path is the file the configuration was read from; empty for the
	// embedded default.
	Path string `yaml:"-"`
	// Trial is set for the embedded default run without a file (`make
	// run`): the relay then also admits loopback peers (TrialPeers), so
	// that `bench turn` and turnutils_uclient work on one machine. A
	// configuration file never gets this, whatever it holds.
	Trial bool `yaml:"-"`
}

// TrialPeers are the peer ranges the trial configuration admits on top of
// the file's relay.allowed_peers: loopback only.
var TrialPeers = []string{"127.0.0.0/8", "::1/128"}

// MetricsConfig is the `metrics` section.
type MetricsConfig struct {
	// Listen is the TCP address of /metrics, /healthz and /readyz; empty
	// disables the endpoint.
	Listen string `yaml:"listen"`
}

// Validate implements config.Validator.
func (c *MetricsConfig) Validate() error {
	if c.Listen == "" {
		return nil
	}
	var ps config.Problems
	if _, err := config.ParseAddrPort(c.Listen); err != nil {
		ps.AddErr("listen", err)
	}
	return ps.Err()
}

// ControlConfig is the `control` section.
type ControlConfig struct {
	// Socket is the unix socket path; empty means the runtime directory.
	Socket string `yaml:"socket"`
	// TCPListen is an optional TCP address for the control API.
	TCPListen string `yaml:"tcp_listen"`
	// TokenFile holds the bearer token required on TCPListen, at least
	// control.MinTokenSize bytes.
	TokenFile config.SecretFile `yaml:"token_file"`
	// MaxLongPolls caps the long polls (GET /v1/gateway/events?wait=)
	// served at the same time; more get 503. 0 means no cap.
	MaxLongPolls int `yaml:"max_long_polls"`
}

// Validate implements config.Validator.
func (c *ControlConfig) Validate() error {
	var ps config.Problems
	if c.Socket != "" && !filepath.IsAbs(c.Socket) {
		ps.Add("socket", "%q is not an absolute path", c.Socket)
	}
	if c.TCPListen != "" {
		if _, err := config.ParseAddrPort(c.TCPListen); err != nil {
			ps.AddErr("tcp_listen", err)
		}
		if !c.TokenFile.IsSet() {
			ps.Add("token_file", "required when tcp_listen is set: the TCP control API always needs a bearer token")
		}
	}
	if b := c.TokenFile.Bytes(); b != nil && len(b) < control.MinTokenSize {
		ps.Add("token_file", "the token in %s is shorter than %d bytes; make one with: head -c 32 /dev/urandom | base64 > %s", c.TokenFile, control.MinTokenSize, c.TokenFile)
	}
	if c.MaxLongPolls < 0 {
		ps.Add("max_long_polls", "must not be negative (0 means no cap)")
	}
	return ps.Err()
}

// Validate implements config.Validator for checks that span sections: the
// split-tunnel policy routes mediaedge's own media sockets by their mark, so
// the relay's and the gateway cloud leg's marks must be the policy's.
// Anything else silently sends that media into the VPN.
func (c *Config) Validate() error {
	var ps config.Problems
	if !c.Policy.Enabled || c.Policy.Mode != policy.ModeEnforce {
		return nil
	}
	if c.Policy.Mark == 0 {
		if c.Relay.Enabled || c.Gateway.Enabled {
			ps.Add("policy.mark", "0 while split-tunnel policy is enforced: the relay's and the gateway's own media sockets would follow the VPN default route (set policy.mark, relay.mark and gateway.cloud.mark to the same value, e.g. 0x4d45)")
		}
		return ps.Err()
	}
	if c.Relay.Enabled && c.Relay.Mark != c.Policy.Mark {
		ps.Add("relay.mark", "%s differs from policy.mark %s: relayed media would not be routed via the direct uplink", c.Relay.Mark, c.Policy.Mark)
	}
	if c.Gateway.Enabled && c.Gateway.Cloud.Mark != c.Policy.Mark {
		ps.Add("gateway.cloud.mark", "%s differs from policy.mark %s: the cloud leg would not be routed via the direct uplink", c.Gateway.Cloud.Mark, c.Policy.Mark)
	}
	return ps.Err()
}

// SocketPath returns the control socket path to use.
func (c ControlConfig) SocketPath() string {
	if c.Socket != "" {
		return c.Socket
	}
	return defaultSocket()
}

// DefaultConfig returns every section's documented defaults.
func DefaultConfig() Config {
	return Config{
		Log:     logging.DefaultConfig(),
		Metrics: MetricsConfig{Listen: "127.0.0.1:9477"},
		Control: ControlConfig{MaxLongPolls: control.DefaultMaxLongPolls},
		Relay:   relay.DefaultConfig(),
		Gateway: gateway.DefaultConfig(),
		Policy:  policy.DefaultConfig(),
	}
}

// DefaultYAML returns the embedded default configuration file, commented.
func DefaultYAML() string {
	var b strings.Builder
	b.WriteString(baseYAML)
	for _, s := range []struct{ name, body string }{
		{"relay", relay.DefaultYAML},
		{"gateway", gateway.DefaultYAML},
		{"policy", policy.DefaultYAML},
	} {
		fmt.Fprintf(&b, "\n%s:\n", s.name)
		for _, line := range strings.Split(strings.TrimRight(s.body, "\n"), "\n") {
			if line == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

// Parse decodes data over the defaults. dir resolves relative secret paths.
func Parse(data []byte, dir string, opts config.Options) (Config, error) {
	cfg := DefaultConfig()
	opts.Dir = dir
	if err := config.Decode(data, &cfg, opts); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Load reads and decodes the file at path, or the embedded default when
// path is empty.
func Load(path string, opts config.Options) (Config, error) {
	if path == "" {
		cfg, err := Parse([]byte(DefaultYAML()), "", opts)
		if err != nil {
			return Config{}, err
		}
		cfg.Trial = true
		for _, p := range TrialPeers {
			cfg.Relay.AllowedPeers = append(cfg.Relay.AllowedPeers, config.Prefix{Prefix: netip.MustParsePrefix(p)})
		}
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return Config{}, fmt.Errorf("reading %s: %w", path, pe.Err)
		}
		return Config{}, fmt.Errorf("reading %s: %w", path, err)
	}
	abs, _ := filepath.Abs(path)
	cfg, err := Parse(data, filepath.Dir(abs), opts)
	if err != nil {
		return Config{}, err
	}
	cfg.Path = path
	return cfg, nil
}
