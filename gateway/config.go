package gateway

import (
	_ "embed"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// DefaultYAML is the commented `gateway:` section of the embedded default
// configuration (without the section key), as `mediaedge config default`
// prints it.
//
//go:embed default.yaml
var DefaultYAML string

// PortMode says how a leg's sessions get their ports: PortsDedicated or
// PortsShared.
type PortMode string

// Port modes of a leg.
const (
	// PortsDedicated gives every session its own port on the leg (two
	// without rtcp-mux): the session is known from the port alone.
	PortsDedicated PortMode = "dedicated"
	// PortsShared puts every session of a worker on one port per leg and
	// tells sessions apart by source address and SSRC, learned from the
	// first packet that authenticates with a session's key. It needs one
	// socket per worker instead of one per session.
	PortsShared PortMode = "shared"
)

// ROCPolicy is what a leg does with the rollover counter when a key
// changes: ROCKeep or ROCReset.
type ROCPolicy string

// ROC policies of a leg, applied when a key changes.
const (
	// ROCKeep carries the rollover counter over to the new key (RFC 3711).
	ROCKeep ROCPolicy = "keep"
	// ROCReset starts the new key with a rollover counter of 0, as some
	// cloud media processors expect after a re-key.
	ROCReset ROCPolicy = "reset"
)

// ExhaustPolicy is what a leg does when its outbound key's lifetime runs
// out: ExhaustRekey or ExhaustStop.
type ExhaustPolicy string

// What a leg does when its outbound key's lifetime runs out.
const (
	// ExhaustRekey switches to a fresh key before the budget is spent.
	ExhaustRekey ExhaustPolicy = "rekey"
	// ExhaustStop stops sending on the leg (packets are dropped and
	// counted) until the key is replaced through the API.
	ExhaustStop ExhaustPolicy = "stop"
)

// SteeringMode says whether datagrams to dedicated ports are steered to
// one socket per worker (steering.go): SteeringAuto, SteeringOn or
// SteeringOff.
type SteeringMode string

// Steering modes.
const (
	// SteeringAuto steers when the gateway may open dedicated ports and
	// the kernel and the process's capabilities allow it; where they do
	// not, it logs once why not and reads every dedicated socket on its
	// own.
	SteeringAuto SteeringMode = "auto"
	// SteeringOn steers or fails to start.
	SteeringOn SteeringMode = "on"
	// SteeringOff reads every dedicated socket on its own.
	SteeringOff SteeringMode = "off"
)

// Config is the `gateway` section of the configuration.
type Config struct {
	// Enabled turns the component on.
	Enabled bool `yaml:"enabled"`
	// Workers is the number of data-path event loops; 0 means one per CPU
	// the process may use (GOMAXPROCS). Changing it needs a restart.
	Workers int `yaml:"workers"`
	// MaxSessions bounds the concurrent sessions.
	MaxSessions int `yaml:"max_sessions"`
	// IdleTimeout ends a session that received no authenticated packet on
	// either leg for this long (0: never).
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// Batch is the number of datagrams read or written per system call.
	Batch int `yaml:"batch"`
	// Coalesce is how long a busy worker waits for more packets before
	// it serves its sockets again: fewer wake-ups per packet at the price
	// of at most this much added latency. 0 serves every packet at once.
	Coalesce config.Duration `yaml:"coalesce"`
	// MaxSSRCs bounds the SSRCs one leg direction may carry; packets of
	// further SSRCs are dropped and counted.
	MaxSSRCs int `yaml:"max_ssrcs"`
	// Steering hands datagrams addressed to dedicated ports to one socket
	// per worker with an sk_lookup BPF program, so that they are read in
	// batches: auto, on or off. Changing it needs a restart.
	Steering SteeringMode `yaml:"steering"`
	// Internal is the leg toward enterprise endpoints.
	Internal LegConfig `yaml:"internal"`
	// Cloud is the leg toward the cloud provider's media relays.
	Cloud LegConfig `yaml:"cloud"`
	// NG is the ng control protocol listener (ngconfig.go).
	NG NGConfig `yaml:"ng"`
	// DTLS is how DTLS-SRTP legs (WebRTC endpoints) are keyed
	// (dtlsconfig.go).
	DTLS DTLSConfig `yaml:"dtls"`
}

// LegConfig is the configuration of one leg (gateway.internal or
// gateway.cloud).
type LegConfig struct {
	// Bind is the local IP address of the leg's sockets.
	Bind string `yaml:"bind"`
	// Ports is the range local ports are allocated from.
	Ports config.PortRange `yaml:"ports"`
	// PortMode is "dedicated" or "shared".
	PortMode PortMode `yaml:"port_mode"`
	// Suites are the crypto suites the leg accepts, for the peer's key and
	// the gateway's own.
	Suites []string `yaml:"suites"`
	// AllowPlain lets a session carry plain RTP on this leg (no crypto).
	AllowPlain bool `yaml:"allow_plain"`
	// AllowNullCipher allows the NULL_HMAC_SHA1_* suites and the
	// UNENCRYPTED_SRTP/SRTCP session parameters (authentication only).
	AllowNullCipher bool `yaml:"allow_null_cipher"`
	// Symmetric accepts packets only from the leg's remote address (given
	// or latched); otherwise any source whose packets authenticate is
	// accepted, and the remote address stays where it is.
	Symmetric bool `yaml:"symmetric"`
	// ReplayWindow is the SRTP/SRTCP replay window in packets.
	ReplayWindow int `yaml:"replay_window"`
	// RecvBuffer and SendBuffer are the socket buffer sizes.
	RecvBuffer config.ByteSize `yaml:"recv_buffer"`
	SendBuffer config.ByteSize `yaml:"send_buffer"`
	// Mark is the SO_MARK of the leg's sockets (split tunnelling; on the
	// cloud leg). 0: no mark.
	Mark config.Mark `yaml:"mark"`
	// ROC is the rollover-counter policy on a new key: keep or reset.
	ROC ROCPolicy `yaml:"roc"`
	// KeyLifetime is the packet budget the gateway gives its own keys on
	// this leg and announces in its a=crypto line; 0: none (RFC 3711's
	// 2^48 SRTP / 2^31 SRTCP limits still apply).
	KeyLifetime uint64 `yaml:"key_lifetime"`
	// OnKeyExhausted is "rekey" or "stop".
	OnKeyExhausted ExhaustPolicy `yaml:"on_key_exhausted"`
	// RekeyInterval re-keys the gateway's outbound key on this leg this
	// often (0: never).
	RekeyInterval config.Duration `yaml:"rekey_interval"`
	// RekeyPackets re-keys after this many packets with one key (0: never).
	RekeyPackets uint64 `yaml:"rekey_packets"`
	// SwitchDelay is how long a new outbound key is announced before the
	// gateway encrypts with it (0: at once).
	SwitchDelay config.Duration `yaml:"switch_delay"`
	// RekeyGrace is how long the peer's previous key is still accepted
	// after the peer's key is replaced.
	RekeyGrace config.Duration `yaml:"rekey_grace"`
	// ICELite makes mediaedge an ICE-lite agent toward this leg's peers
	// in every ng call, as with the ng flag ICE=force (docs/ng.md).
	ICELite bool `yaml:"ice_lite"`
}

// DefaultConfig returns the documented defaults: both legs on loopback, so
// that the embedded default runs without root.
func DefaultConfig() Config {
	leg := func(ports config.PortRange) LegConfig {
		return LegConfig{
			Bind:           "127.0.0.1",
			Ports:          ports,
			PortMode:       PortsShared,
			Suites:         SuiteNames()[:6],
			Symmetric:      true,
			ReplayWindow:   256,
			RecvBuffer:     8 << 20,
			SendBuffer:     4 << 20,
			ROC:            ROCKeep,
			OnKeyExhausted: ExhaustRekey,
			RekeyGrace:     config.Duration(10 * time.Second),
		}
	}
	return Config{
		// Off unless a file enables it; the embedded default does.
		Enabled:     false,
		MaxSessions: 1000,
		IdleTimeout: config.Duration(60 * time.Second),
		Batch:       32,
		Coalesce:    config.Duration(700 * time.Microsecond),
		MaxSSRCs:    16,
		Steering:    SteeringAuto,
		Internal:    leg(config.PortRange{Min: 40000, Max: 44999}),
		Cloud:       leg(config.PortRange{Min: 45000, Max: 49999}),
		NG:          defaultNG(),
		DTLS:        defaultDTLS(),
	}
}

// Validate implements config.Validator. New and Reload call it too, except
// that they accept a leg without a port range (0-0: any free port the
// kernel picks), which a configuration file must give.
func (c *Config) Validate() error { return c.validate(true) }

// validate checks c; needPorts refuses a leg without a port range.
func (c *Config) validate(needPorts bool) error {
	var ps config.Problems
	if c.Workers < 0 || c.Workers > 64 {
		ps.Add("workers", "%d: want 0 (one per CPU) to 64", c.Workers)
	}
	if c.MaxSessions < 1 || c.MaxSessions > 1_000_000 {
		ps.Add("max_sessions", "%d: want 1 to 1000000", c.MaxSessions)
	}
	if c.Batch < 1 || c.Batch > 1024 {
		ps.Add("batch", "%d: want 1 to 1024", c.Batch)
	}
	if d := c.Coalesce.D(); d < 0 || d > 2*time.Millisecond {
		ps.Add("coalesce", "%s: want 0s to 2ms", d)
	}
	if c.MaxSSRCs < 1 || c.MaxSSRCs > 1024 {
		ps.Add("max_ssrcs", "%d: want 1 to 1024", c.MaxSSRCs)
	}
	switch c.Steering {
	case SteeringAuto, SteeringOn, SteeringOff:
	case "":
		c.Steering = SteeringAuto
	default:
		ps.Add("steering", "%q: want %q, %q or %q", c.Steering, SteeringAuto, SteeringOn, SteeringOff)
	}
	ps.AddErr("internal", c.Internal.validate(needPorts))
	ps.AddErr("cloud", c.Cloud.validate(needPorts))
	ps.AddErr("ng", c.NG.validate(c, needPorts))
	ps.AddErr("dtls", c.DTLS.validate())
	// Two "any free port" legs (0-0, see New) never collide.
	anyPort := c.Internal.Ports.Min == 0 || c.Cloud.Ports.Min == 0
	if c.Internal.Bind == c.Cloud.Bind && overlap(c.Internal.Ports, c.Cloud.Ports) && (needPorts || !anyPort) {
		ps.Add("cloud.ports", "%s overlaps internal.ports %s on the same address", c.Cloud.Ports, c.Internal.Ports)
	}
	return ps.Err()
}

func (l *LegConfig) validate(needPorts bool) error {
	var ps config.Problems
	if _, err := l.bindAddr(); err != nil {
		ps.AddErr("bind", err)
	}
	if needPorts && l.Ports.Min == 0 {
		ps.Add("ports", "required: a port range such as \"40000-44999\"")
	}
	switch l.PortMode {
	case PortsDedicated, PortsShared:
	default:
		ps.Add("port_mode", "%q: want %q or %q", l.PortMode, PortsDedicated, PortsShared)
	}
	if len(l.Suites) == 0 && !l.AllowPlain {
		ps.Add("suites", "empty: list at least one suite, or set allow_plain")
	}
	for i, name := range l.Suites {
		s := LookupSuite(name)
		switch {
		case s == nil:
			ps.Add(config.Index("suites", i), "unknown suite %q (known: %v)", name, SuiteNames())
		case s.Null && !l.AllowNullCipher:
			ps.Add(config.Index("suites", i), "%s does not encrypt: also set allow_null_cipher", name)
		}
	}
	if l.ReplayWindow < 64 || l.ReplayWindow > maxWSH {
		ps.Add("replay_window", "%d: want 64 to %d", l.ReplayWindow, maxWSH)
	}
	if l.RecvBuffer < 0 || l.RecvBuffer > 1<<30 {
		ps.Add("recv_buffer", "want 0 (kernel default) to 1GiB")
	}
	if l.SendBuffer < 0 || l.SendBuffer > 1<<30 {
		ps.Add("send_buffer", "want 0 (kernel default) to 1GiB")
	}
	switch l.ROC {
	case ROCKeep, ROCReset:
	default:
		ps.Add("roc", "%q: want %q or %q", l.ROC, ROCKeep, ROCReset)
	}
	if l.KeyLifetime != 0 && (l.KeyLifetime < 16 || l.KeyLifetime > maxLifetimeRTP) {
		ps.Add("key_lifetime", "%d: want 0 (none) or 16 to 2^48 packets", l.KeyLifetime)
	}
	switch l.OnKeyExhausted {
	case ExhaustRekey, ExhaustStop:
	default:
		ps.Add("on_key_exhausted", "%q: want %q or %q", l.OnKeyExhausted, ExhaustRekey, ExhaustStop)
	}
	if d := l.RekeyInterval.D(); d != 0 && d < time.Second {
		ps.Add("rekey_interval", "%s: want 0 (never) or at least 1s", d)
	}
	if l.RekeyPackets != 0 && l.RekeyPackets < 16 {
		ps.Add("rekey_packets", "%d: want 0 (never) or at least 16", l.RekeyPackets)
	}
	if l.SwitchDelay.D() > time.Minute {
		ps.Add("switch_delay", "%s: at most 1m", l.SwitchDelay)
	}
	if l.RekeyGrace.D() > time.Hour {
		ps.Add("rekey_grace", "%s: at most 1h", l.RekeyGrace)
	}
	return ps.Err()
}

// bindAddr parses Bind.
func (l *LegConfig) bindAddr() (netip.Addr, error) {
	a, err := netip.ParseAddr(l.Bind)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", l.Bind)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: zoned addresses are not supported", l.Bind)
	}
	return a.Unmap(), nil
}

// allows reports whether the leg accepts suite s.
func (l *LegConfig) allows(s *Suite) bool {
	if s.Null && !l.AllowNullCipher {
		return false
	}
	return slices.ContainsFunc(l.Suites, func(n string) bool { return LookupSuite(n) == s })
}

func overlap(a, b config.PortRange) bool {
	return a.Len() > 0 && b.Len() > 0 && a.Min <= b.Max && b.Min <= a.Max
}
