package relay

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
)

// Reload applies cfg without dropping allocations: credentials (users and
// REST secrets: a removed secret stops working at once), the peer and
// client policy (also for existing permissions and channels), quotas,
// lifetimes, bandwidth caps, the coalesce window, and renewed TLS
// certificates. Changes to listeners, realm, relay addresses, port range,
// shards, mark, fast_path or socket buffers need a restart: Reload then returns an
// error wrapping ErrRestartNeeded and applies nothing. A cfg that Validate
// refuses is refused too, and applies nothing.
func (s *Server) Reload(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	state := s.state
	s.mu.Unlock()
	if state != "running" {
		return nil
	}
	if what := restartOnly(&s.cfg, &cfg); len(what) > 0 {
		return &restartError{what: strings.Join(what, ", ")}
	}
	creds, err := cfg.loadCredentials(s.generated)
	if err != nil {
		return err
	}
	// Certificates first: a bad one refuses the whole reload. tcpLns are
	// the TCP and TLS listeners in configuration order.
	n := 0
	for _, l := range cfg.Listeners {
		if l.Transport == TransportUDP {
			continue
		}
		if t := s.tcpLns[n]; t.transport == "tls" {
			if err := t.loadCert(l); err != nil {
				return err
			}
		}
		n++
	}
	s.auth.set(creds)
	lim := cfg.Limits
	s.limits.Store(&lim)
	s.coalesce.Store(int64(cfg.Coalesce.D()))
	s.policy.Store(s.buildPolicy(&cfg))

	s.mu.Lock()
	as := make([]*alloc, 0, len(s.allocs))
	for _, a := range s.allocs {
		as = append(as, a)
	}
	us := make([]*userState, 0, len(s.users))
	for _, u := range s.users {
		us = append(us, u)
	}
	s.mu.Unlock()
	now := s.nanotime()
	for _, a := range as {
		a.mu.Lock()
		a.editLocked(nil) // judged again with the new policy
		a.mu.Unlock()
		setBuckets(&a.buckets, int64(lim.BitratePerAllocation), now)
	}
	for _, u := range us {
		setBuckets(&u.buckets, int64(lim.BitratePerUser), now)
	}
	s.log.Info("relay reloaded", "users", len(creds.users), "rest_secrets", len(creds.secrets),
		"allowed_peers", len(cfg.AllowedPeers), "denied_peers", len(cfg.DeniedPeers),
		"allocations", len(as))
	return nil
}

// setBuckets installs buckets for a new cap, keeping the current ones when
// the rate is unchanged.
func setBuckets(b *[numDirs]atomic.Pointer[tokenBucket], bitrate int64, now int64) {
	for d := range b {
		cur := b[d].Load()
		if bitrate <= 0 {
			b[d].Store(nil)
			continue
		}
		if cur != nil && cur.rate == float64(bitrate)/8/1e9 {
			continue
		}
		b[d].Store(newBucket(bitrate, now))
	}
}

// restartOnly lists the settings that differ between a and b and cannot
// change on a running relay.
func restartOnly(a, b *Config) []string {
	var out []string
	if a.Realm != b.Realm {
		out = append(out, "realm")
	}
	if len(a.Listeners) != len(b.Listeners) {
		out = append(out, "listeners")
	} else {
		for i := range a.Listeners {
			x, y := a.Listeners[i], b.Listeners[i]
			if x.Transport != y.Transport || x.Addr != y.Addr || x.CertFile != y.CertFile || x.KeyFile.Path != y.KeyFile.Path {
				out = append(out, "listeners")
				break
			}
		}
	}
	for _, f := range []struct {
		name string
		x, y any
	}{
		{"udp_shards", a.UDPShards, b.UDPShards},
		{"fast_path", a.FastPath, b.FastPath},
		{"relay_ip", a.RelayIP, b.RelayIP},
		{"relay_address", a.RelayAddress, b.RelayAddress},
		{"relay_ipv6", a.RelayIPv6, b.RelayIPv6},
		{"relay_address_ipv6", a.RelayAddressIPv6, b.RelayAddressIPv6},
		{"ports", a.Ports, b.Ports},
		{"mark", a.Mark, b.Mark},
		{"sockets", a.Sockets, b.Sockets},
		{"auth.generate_user", a.Auth.GenerateUser, b.Auth.GenerateUser},
	} {
		if !reflect.DeepEqual(f.x, f.y) {
			out = append(out, f.name)
		}
	}
	return out
}

// buildPolicy makes the peer policy of cfg. The relay's own addresses are
// its listener and relay addresses and every address of the host's
// interfaces.
func (s *Server) buildPolicy(cfg *Config) *peerPolicy {
	var own []netip.Addr
	for _, l := range cfg.Listeners {
		own = append(own, l.Addr.Addr())
	}
	own = append(own, s.bind[0], s.bind[1], s.adv[0], s.adv[1])
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				own = append(own, p.Addr())
			}
		}
	}
	return newPeerPolicy(prefixes(cfg.AllowedPeers), prefixes(cfg.DeniedPeers), prefixes(cfg.AllowedClients), own)
}
