package relay

import (
	"crypto/tls"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// DefaultYAML is the commented `relay:` section of the embedded default
// configuration (without the section key), as `mediaedge config default`
// prints it.
//
//go:embed default.yaml
var DefaultYAML string

// Config is the `relay` section of the configuration: the TURN relay's
// listeners, relay sockets, credentials, peer policy and limits.
// docs/relay.md describes every key.
type Config struct {
	// Enabled turns the component on.
	Enabled bool `yaml:"enabled"`
	// Realm is the long-term credential realm (RFC 8489). It cannot change
	// on reload: every credential key depends on it.
	Realm string `yaml:"realm"`
	// Listeners are the addresses clients reach the relay on.
	Listeners []ListenerConfig `yaml:"listeners"`
	// UDPShards is the number of SO_REUSEPORT sockets per UDP listener, each
	// with its own reader; 0 means one per usable CPU (GOMAXPROCS). pion
	// keeps EVEN-PORT reservations per socket, so with more than one shard
	// an RTP/RTCP pair allocated from two client ports can fail (508).
	UDPShards int `yaml:"udp_shards"`
	// Coalesce is how long a worker waits, once datagrams arrive in quick
	// succession, to relay everything that arrived meanwhile in one batch
	// per socket: fewer wake-ups and system calls per datagram for at most
	// this much added latency per hop. A lone datagram is relayed at once;
	// 0 relays every datagram as soon as it arrives.
	Coalesce config.Duration `yaml:"coalesce"`
	// RelayIP is the IPv4 address relay sockets bind to; empty means the
	// address of the first IPv4 listener.
	RelayIP string `yaml:"relay_ip"`
	// RelayAddress is the IPv4 address given to clients as their relayed
	// address (XOR-RELAYED-ADDRESS) when it differs from RelayIP behind a
	// 1:1 NAT. Empty means RelayIP.
	RelayAddress string `yaml:"relay_address"`
	// RelayIPv6 is the IPv6 address relay sockets bind to for IPv6
	// allocations (RFC 6156); empty disables IPv6 allocations unless an IPv6
	// listener gives one.
	RelayIPv6 string `yaml:"relay_ipv6"`
	// RelayAddressIPv6 is the advertised IPv6 relayed address; empty means
	// RelayIPv6.
	RelayAddressIPv6 string `yaml:"relay_address_ipv6"`
	// Ports is the range relay sockets bind in.
	Ports config.PortRange `yaml:"ports"`
	// Mark is the SO_MARK of relay sockets (the ones that talk to peers), so
	// that split-tunnel policy routing sends them via the direct uplink. 0
	// sets none; setting one needs CAP_NET_ADMIN.
	Mark config.Mark `yaml:"mark"`
	// FastPath forwards established UDP channels in the kernel (a TC
	// program): "off" (the default) keeps every datagram in user space,
	// "auto" uses the kernel when it and the process's capabilities allow
	// and otherwise says once why not, "on" refuses to start without it.
	// docs/relay.md ("In-kernel fast path") says what it covers.
	FastPath string `yaml:"fast_path"`
	// Auth holds the credentials.
	Auth AuthConfig `yaml:"auth"`
	// AllowedPeers opens peer ranges that the built-in policy refuses.
	AllowedPeers []config.Prefix `yaml:"allowed_peers"`
	// DeniedPeers refuses more peer ranges; it wins over AllowedPeers.
	DeniedPeers []config.Prefix `yaml:"denied_peers"`
	// AllowedClients limits which source addresses may use the relay at
	// all; empty admits every client that authenticates.
	AllowedClients []config.Prefix `yaml:"allowed_clients"`
	// Limits are quotas, lifetimes and bandwidth caps.
	Limits LimitsConfig `yaml:"limits"`
	// Sockets are socket buffer sizes.
	Sockets SocketsConfig `yaml:"sockets"`
}

// Values of Config.FastPath.
const (
	FastPathOff  = "off"
	FastPathAuto = "auto"
	FastPathOn   = "on"
)

// Transport is how clients reach a listener: TransportUDP, TransportTCP or
// TransportTLS.
type Transport string

// Transports of a listener.
const (
	// TransportUDP is TURN over UDP.
	TransportUDP Transport = "udp"
	// TransportTCP is TURN over TCP (RFC 8656 and RFC 6062).
	TransportTCP Transport = "tcp"
	// TransportTLS is TURN over TLS on TCP.
	TransportTLS Transport = "tls"
)

// ListenerConfig is one TURN listener.
type ListenerConfig struct {
	// Transport is udp, tcp or tls.
	Transport Transport `yaml:"transport"`
	// Addr is the address and port to listen on.
	Addr config.AddrPort `yaml:"addr"`
	// CertFile is the PEM certificate chain of a tls listener; re-read on
	// reload so that a renewed certificate is picked up.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of a tls listener (mode 0600).
	KeyFile config.SecretFile `yaml:"key_file"`
}

// AuthConfig is `relay.auth`.
type AuthConfig struct {
	// UsersFile lists static users, one "name:password" or
	// "name:0x<md5(name:realm:password)>" per line.
	UsersFile config.SecretFile `yaml:"users_file"`
	// SecretFiles hold TURN REST shared secrets (coturn use-auth-secret),
	// one per line; every secret of every file is accepted, so a new one can
	// be added before the old one is removed.
	SecretFiles []config.SecretFile `yaml:"secret_files"`
	// MaxCredentialTTL refuses REST credentials that expire further in the
	// future than this; 0 accepts any expiry.
	MaxCredentialTTL config.Duration `yaml:"max_credential_ttl"`
	// GenerateUser, when set, adds a user of that name whose password is
	// generated at start-up and printed once on the console. For trials.
	GenerateUser string `yaml:"generate_user"`
}

// LimitsConfig is `relay.limits`.
type LimitsConfig struct {
	// MaxAllocations caps live allocations in total (486 beyond); 0 means
	// no cap.
	MaxAllocations int `yaml:"max_allocations"`
	// MaxAllocationsPerUser caps live allocations per user (486 beyond); 0
	// means no cap.
	MaxAllocationsPerUser int `yaml:"max_allocations_per_user"`
	// Lifetime is the allocation lifetime granted when a client asks for
	// none. pion grants what the client asks up to one hour.
	Lifetime config.Duration `yaml:"lifetime"`
	// MaxDuration ends an allocation this long after it was created,
	// whatever its refreshes; 0 means never.
	MaxDuration config.Duration `yaml:"max_duration"`
	// BitratePerAllocation caps each allocation's traffic in each direction
	// (token bucket; excess dropped and counted); 0 means no cap.
	BitratePerAllocation config.Bitrate `yaml:"bitrate_per_allocation"`
	// BitratePerUser caps the sum of a user's allocations in each
	// direction; 0 means no cap.
	BitratePerUser config.Bitrate `yaml:"bitrate_per_user"`
	// MaxTCPConnections caps open client TCP/TLS connections in total;
	// connections beyond are closed at accept and counted. 0 means no cap.
	MaxTCPConnections int `yaml:"max_tcp_connections"`
	// MaxTCPConnectionsPerSource caps open client TCP/TLS connections per
	// source address. 0 means no cap.
	MaxTCPConnectionsPerSource int `yaml:"max_tcp_connections_per_source"`
	// TCPAuthTimeout closes a client TCP/TLS connection on which no request
	// authenticated this long after accept (TLS handshake included). 0
	// means no deadline.
	TCPAuthTimeout config.Duration `yaml:"tcp_auth_timeout"`
	// ChallengesPerSource bounds the requests without credentials a source
	// address gets a 401 answer to, per second (burst twice that); more are
	// dropped unanswered and counted. 0 means no bound.
	ChallengesPerSource int `yaml:"challenges_per_source"`
}

// SocketsConfig is `relay.sockets`.
type SocketsConfig struct {
	// ListenerBuffer is SO_RCVBUF/SO_SNDBUF of listener sockets, which carry
	// every client's traffic.
	ListenerBuffer config.ByteSize `yaml:"listener_buffer"`
	// RelayBuffer is SO_RCVBUF/SO_SNDBUF of each relay socket.
	RelayBuffer config.ByteSize `yaml:"relay_buffer"`
}

// DefaultConfig returns the documented defaults: a disabled relay that,
// once enabled, listens on loopback only (exposing it is the admin's
// explicit choice).
func DefaultConfig() Config {
	return Config{
		Realm: "mediaedge.local",
		Listeners: []ListenerConfig{
			{Transport: TransportUDP, Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("127.0.0.1:3478")}},
			{Transport: TransportTCP, Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("127.0.0.1:3478")}},
		},
		UDPShards: 1,
		Coalesce:  config.Duration(500 * time.Microsecond),
		FastPath:  FastPathOff,
		Ports:     config.PortRange{Min: 49152, Max: 65535},
		Limits: LimitsConfig{
			MaxAllocations:        10000,
			MaxAllocationsPerUser: 100,
			Lifetime:              config.Duration(10 * time.Minute),

			MaxTCPConnections:          10000,
			MaxTCPConnectionsPerSource: 256,
			TCPAuthTimeout:             config.Duration(5 * time.Second),
			ChallengesPerSource:        200,
		},
		Sockets: SocketsConfig{
			ListenerBuffer: 4 << 20,
			RelayBuffer:    256 << 10,
		},
	}
}

// Validate implements config.Validator. Paths are relative to the section.
func (c *Config) Validate() error {
	var ps config.Problems
	if c.Realm == "" {
		ps.Add("realm", "must not be empty")
	} else if strings.ContainsAny(c.Realm, "\"\r\n\t") || len(c.Realm) > 127 {
		ps.Add("realm", "must be at most 127 characters without quotes or control characters")
	}
	seen := map[string]int{}
	for i, l := range c.Listeners {
		p := config.Index("listeners", i)
		ps.AddErr(p, l.validate())
		k := l.network() + " " + l.Addr.String()
		// Port 0 (any free port, as in tests) never collides.
		if j, dup := seen[k]; dup && l.Addr.Port() != 0 {
			ps.Add(p, "same address as listeners[%d]", j)
		}
		seen[k] = i
	}
	if c.Enabled && len(c.Listeners) == 0 {
		ps.Add("listeners", "at least one listener is needed")
	}
	if c.UDPShards < 0 || c.UDPShards > 64 {
		ps.Add("udp_shards", "must be between 0 (one per CPU) and 64")
	}
	if d := c.Coalesce.D(); d < 0 || d > 2*time.Millisecond {
		ps.Add("coalesce", "%s is outside 0s to 2ms", c.Coalesce)
	}
	switch c.FastPath {
	case "", FastPathOff, FastPathAuto, FastPathOn:
	default:
		ps.Add("fast_path", "%q is not off, auto or on", c.FastPath)
	}
	for _, f := range []struct {
		key, val string
		v6       bool
	}{
		{"relay_ip", c.RelayIP, false}, {"relay_address", c.RelayAddress, false},
		{"relay_ipv6", c.RelayIPv6, true}, {"relay_address_ipv6", c.RelayAddressIPv6, true},
	} {
		if f.val == "" {
			continue
		}
		a, err := netip.ParseAddr(f.val)
		switch {
		case err != nil:
			ps.Add(f.key, "%q is not an IP address", f.val)
		case f.v6 && !a.Is6(), !f.v6 && !a.Is4():
			ps.Add(f.key, "%s is not an IPv%s address", f.val, map[bool]string{true: "6", false: "4"}[f.v6])
		case strings.HasPrefix(f.key, "relay_address") && a.IsUnspecified():
			ps.Add(f.key, "an advertised address cannot be unspecified")
		}
	}
	if len(ps) == 0 && c.Enabled {
		v4, _, v6, _ := c.relayAddrs()
		if !v4.IsValid() && !v6.IsValid() {
			ps.Add("relay_ip", "no relay address: set relay_ip or add a listener on a specific IPv4 address")
		}
		if v4.IsValid() && v4.IsUnspecified() && c.RelayAddress == "" {
			ps.Add("relay_address", "needed when relay_ip is 0.0.0.0: clients must be told a real address")
		}
		if v6.IsValid() && v6.IsUnspecified() && c.RelayAddressIPv6 == "" {
			ps.Add("relay_address_ipv6", "needed when relay_ipv6 is ::")
		}
	}
	if c.Ports.Len() == 0 {
		ps.Add("ports", "must not be empty")
	}
	ps.AddErr("auth", c.Auth.validate(c.Enabled, c.Realm))
	ps.AddErr("limits", c.Limits.validate())
	if c.Sockets.ListenerBuffer < 0 || c.Sockets.ListenerBuffer > 1<<30 {
		ps.Add("sockets.listener_buffer", "must be between 0 (kernel default) and 1GiB")
	}
	if c.Sockets.RelayBuffer < 0 || c.Sockets.RelayBuffer > 1<<30 {
		ps.Add("sockets.relay_buffer", "must be between 0 (kernel default) and 1GiB")
	}
	return ps.Err()
}

func (l *ListenerConfig) validate() error {
	var ps config.Problems
	switch l.Transport {
	case TransportUDP, TransportTCP:
		if l.CertFile != "" || l.KeyFile.IsSet() {
			ps.Add("", "cert_file and key_file are for tls listeners only")
		}
	case TransportTLS:
		if l.CertFile == "" {
			ps.Add("cert_file", "required for a tls listener")
		}
		if !l.KeyFile.IsSet() {
			ps.Add("key_file", "required for a tls listener")
		}
		if l.CertFile != "" {
			l.checkPair(&ps)
		}
	default:
		ps.Add("transport", "%q is not udp, tcp or tls", l.Transport)
	}
	if !l.Addr.IsValid() {
		ps.Add("addr", "required")
	}
	return ps.Err()
}

// checkPair loads a tls listener's certificate and key as Start would, so
// that `config check` catches a missing or unreadable pair before `run`.
// The key is checked only when it was loaded (not with SkipSecrets, and its
// loader has already reported a missing file).
func (l *ListenerConfig) checkPair(ps *config.Problems) {
	certPEM, err := os.ReadFile(l.CertFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		ps.Add("cert_file", "%s cannot be read: %v", l.CertFile, err)
		return
	}
	rest, found := certPEM, false
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			found = true
			break
		}
	}
	if !found {
		ps.Add("cert_file", "%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", l.CertFile)
		return
	}
	key := l.KeyFile.Bytes()
	if key == nil {
		return
	}
	if _, err := tls.X509KeyPair(certPEM, key); err != nil {
		// crypto/tls errors name no key material.
		ps.Add("key_file", "%s does not go with cert_file %s: %v", l.KeyFile, l.CertFile, err)
	}
}

// network returns the socket network of the listener ("udp" or "tcp").
func (l *ListenerConfig) network() string {
	if l.Transport == TransportUDP {
		return "udp"
	}
	return "tcp"
}

func (a *AuthConfig) validate(enabled bool, realm string) error {
	var ps config.Problems
	if a.GenerateUser != "" {
		if err := checkUserName(a.GenerateUser); err != nil {
			ps.Add("generate_user", "%s", strings.TrimPrefix(err.Error(), "relay: "))
		}
	}
	if b := a.UsersFile.Bytes(); b != nil {
		users, err := parseUsers(b, realm)
		if err != nil {
			ps.AddErr("users_file", err)
		} else if _, clash := users[a.GenerateUser]; clash && a.GenerateUser != "" {
			ps.Add("generate_user", "user %q is also in users_file", a.GenerateUser)
		}
	}
	for i := range a.SecretFiles {
		if b := a.SecretFiles[i].Bytes(); b != nil {
			if _, err := parseSecrets(b); err != nil {
				ps.AddErr(config.Index("secret_files", i), err)
			}
		}
	}
	if a.MaxCredentialTTL < 0 {
		ps.Add("max_credential_ttl", "must not be negative")
	}
	if enabled && !a.UsersFile.IsSet() && len(a.SecretFiles) == 0 && a.GenerateUser == "" {
		ps.Add("", "no credentials: set users_file, secret_files or generate_user")
	}
	return ps.Err()
}

func (l *LimitsConfig) validate() error {
	var ps config.Problems
	if l.MaxAllocations < 0 {
		ps.Add("max_allocations", "must not be negative (0 means no cap)")
	}
	if l.MaxAllocationsPerUser < 0 {
		ps.Add("max_allocations_per_user", "must not be negative (0 means no cap)")
	}
	if d := l.Lifetime.D(); d < 30*time.Second || d > time.Hour {
		ps.Add("lifetime", "%s is outside 30s to 1h", l.Lifetime)
	}
	if d := l.MaxDuration.D(); d != 0 && d < time.Minute {
		ps.Add("max_duration", "%s is shorter than a minute (0 means no limit)", l.MaxDuration)
	}
	if l.BitratePerAllocation < 0 {
		ps.Add("bitrate_per_allocation", "must not be negative")
	} else if l.BitratePerAllocation > 0 && l.BitratePerAllocation < 8000 {
		ps.Add("bitrate_per_allocation", "%d bps is below 8kbps: nothing would get through", l.BitratePerAllocation)
	}
	if l.MaxTCPConnections < 0 {
		ps.Add("max_tcp_connections", "must not be negative (0 means no cap)")
	}
	if l.MaxTCPConnectionsPerSource < 0 {
		ps.Add("max_tcp_connections_per_source", "must not be negative (0 means no cap)")
	}
	if d := l.TCPAuthTimeout.D(); d != 0 && (d < time.Second || d > time.Minute) {
		ps.Add("tcp_auth_timeout", "%s is outside 1s to 1m (0s: no deadline)", l.TCPAuthTimeout)
	}
	if l.ChallengesPerSource < 0 {
		ps.Add("challenges_per_source", "must not be negative (0 means no bound)")
	}
	if l.BitratePerUser < 0 {
		ps.Add("bitrate_per_user", "must not be negative")
	} else if l.BitratePerUser > 0 && l.BitratePerUser < 8000 {
		ps.Add("bitrate_per_user", "%d bps is below 8kbps: nothing would get through", l.BitratePerUser)
	}
	return ps.Err()
}

// relayAddrs returns the bind and advertised addresses for IPv4 and IPv6
// relay sockets; an invalid Addr means that family is not relayed. Call it
// on a validated Config.
func (c *Config) relayAddrs() (bind4, adv4, bind6, adv6 netip.Addr) {
	if c.RelayIP != "" {
		bind4 = netip.MustParseAddr(c.RelayIP)
	}
	if c.RelayIPv6 != "" {
		bind6 = netip.MustParseAddr(c.RelayIPv6)
	}
	for _, l := range c.Listeners {
		a := l.Addr.Addr().Unmap()
		if a.IsUnspecified() {
			continue
		}
		if a.Is4() && !bind4.IsValid() {
			bind4 = a
		}
		if a.Is6() && !bind6.IsValid() {
			bind6 = a.WithZone("")
		}
	}
	adv4, adv6 = bind4, bind6
	if c.RelayAddress != "" {
		adv4 = netip.MustParseAddr(c.RelayAddress)
	}
	if c.RelayAddressIPv6 != "" {
		adv6 = netip.MustParseAddr(c.RelayAddressIPv6)
	}
	return bind4, adv4, bind6, adv6
}

// loadCredentials builds the credential snapshot from a validated,
// secret-loaded Config. generated is the trial user's password, if any.
func (c *Config) loadCredentials(generated string) (*credentials, error) {
	cr := &credentials{realm: c.Realm, users: map[string][]byte{}, maxTTL: c.Auth.MaxCredentialTTL.D()}
	if c.Auth.UsersFile.IsSet() {
		b := c.Auth.UsersFile.Bytes()
		if b == nil {
			return nil, fmt.Errorf("relay: users file %s was not loaded", c.Auth.UsersFile)
		}
		u, err := parseUsers(b, c.Realm)
		if err != nil {
			return nil, fmt.Errorf("relay: %s: %w", c.Auth.UsersFile, err)
		}
		cr.users = u
	}
	for i := range c.Auth.SecretFiles {
		sf := &c.Auth.SecretFiles[i]
		b := sf.Bytes()
		if b == nil {
			return nil, fmt.Errorf("relay: secret file %s was not loaded", sf)
		}
		s, err := parseSecrets(b)
		if err != nil {
			return nil, fmt.Errorf("relay: %s: %w", sf, err)
		}
		cr.secrets = append(cr.secrets, s...)
	}
	if c.Auth.GenerateUser != "" && generated != "" {
		cr.users[c.Auth.GenerateUser] = LongTermKey(c.Auth.GenerateUser, c.Realm, generated)
	}
	return cr, nil
}

// prefixes converts config prefixes.
func prefixes(ps []config.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Prefix
	}
	return out
}
