package gateway

import (
	"net/netip"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// NGConfig is the `gateway.ng` section: rtpengine's ng control protocol,
// through which a SIP proxy (Kamailio's or OpenSIPS's rtpengine module)
// hands every call's SDP to mediaedge. See docs/ng.md.
type NGConfig struct {
	// Listen is the UDP address of the ng listener ("ip:port"); empty
	// turns the listener off.
	Listen string `yaml:"listen"`
	// ListenTCP is the TCP address of the ng listener over TCP
	// (rtpengine's listen-tcp-ng: messages back to back on the stream);
	// empty turns it off. The same sources and limits apply.
	ListenTCP string `yaml:"listen_tcp"`
	// AllowedSources are the prefixes requests may come from; ng has no
	// authentication, so anything else is dropped and counted.
	AllowedSources []string `yaml:"allowed_sources"`
	// MaxRequest bounds a request datagram; longer ones are dropped and
	// counted.
	MaxRequest config.ByteSize `yaml:"max_request"`
	// RatePerSource bounds the requests per second from one source address
	// (bursts of the same size); more are dropped and counted.
	RatePerSource int `yaml:"rate_per_source"`
	// ReplyCache is how long a reply is kept for a retransmitted request
	// (same source and cookie), which gets the same reply and never runs
	// twice. ReplyCacheSize bounds the replies kept.
	ReplyCache     config.Duration `yaml:"reply_cache"`
	ReplyCacheSize int             `yaml:"reply_cache_size"`
	// PortMode is how ng calls get their ports: "dedicated" (per call, as
	// SIP deployments and rtpengine do) or "shared" (the worker's shared
	// ports; both legs must be in shared port mode).
	PortMode PortMode `yaml:"port_mode"`
	// InternalInterface and CloudInterface are the names the `direction`
	// flag uses for the internal and the cloud leg (rtpengine's interface
	// names).
	InternalInterface string `yaml:"internal_interface"`
	CloudInterface    string `yaml:"cloud_interface"`
	// DefaultDirection names the offerer's interface and then the
	// answerer's, for requests without a direction flag.
	DefaultDirection []string `yaml:"default_direction"`
	// OfferTimeout frees an offered call that got no answer in this long.
	OfferTimeout config.Duration `yaml:"offer_timeout"`
}

// defaultNG returns the ng defaults: off, loopback sources only.
func defaultNG() NGConfig {
	return NGConfig{
		AllowedSources:    []string{"127.0.0.1/32", "::1/128"},
		MaxRequest:        16 << 10,
		RatePerSource:     1000,
		ReplyCache:        config.Duration(30 * time.Second),
		ReplyCacheSize:    10000,
		PortMode:          PortsDedicated,
		InternalInterface: "internal",
		CloudInterface:    "external",
		DefaultDirection:  []string{"internal", "external"},
		OfferTimeout:      config.Duration(60 * time.Second),
	}
}

// validate checks n; needPorts refuses port 0 (any free port, which New
// accepts for tests) in listen.
func (n *NGConfig) validate(c *Config, needPorts bool) error {
	var ps config.Problems
	if n.Listen != "" {
		if ap, err := netip.ParseAddrPort(n.Listen); err != nil || (needPorts && ap.Port() == 0) {
			ps.Add("listen", "%q: want ip:port, or empty (off)", n.Listen)
		}
	}
	if n.ListenTCP != "" {
		if ap, err := netip.ParseAddrPort(n.ListenTCP); err != nil || (needPorts && ap.Port() == 0) {
			ps.Add("listen_tcp", "%q: want ip:port, or empty (off)", n.ListenTCP)
		}
	}
	for i, s := range n.AllowedSources {
		if _, err := netip.ParsePrefix(s); err != nil {
			ps.Add(config.Index("allowed_sources", i), "%q is not a prefix such as 127.0.0.1/32", s)
		}
	}
	if n.MaxRequest < 512 || n.MaxRequest > 65507 {
		ps.Add("max_request", "%d: want 512 to 65507 bytes", n.MaxRequest)
	}
	if n.RatePerSource < 1 || n.RatePerSource > 1_000_000 {
		ps.Add("rate_per_source", "%d: want 1 to 1000000", n.RatePerSource)
	}
	if d := n.ReplyCache.D(); d < time.Second || d > 10*time.Minute {
		ps.Add("reply_cache", "%s: want 1s to 10m (proxies retransmit for a few seconds)", d)
	}
	if n.ReplyCacheSize < 16 || n.ReplyCacheSize > 1_000_000 {
		ps.Add("reply_cache_size", "%d: want 16 to 1000000", n.ReplyCacheSize)
	}
	switch n.PortMode {
	case PortsDedicated:
	case PortsShared:
		if c.Internal.PortMode != PortsShared || c.Cloud.PortMode != PortsShared {
			ps.Add("port_mode", "shared needs both legs in port_mode shared")
		}
		if c.Internal.ICELite || c.Cloud.ICELite {
			ps.Add("port_mode", "shared: ICE-lite (a leg's ice_lite) needs dedicated ports")
		}
	default:
		ps.Add("port_mode", "%q: want %q or %q", n.PortMode, PortsDedicated, PortsShared)
	}
	if n.InternalInterface == "" || n.CloudInterface == "" || n.InternalInterface == n.CloudInterface {
		ps.Add("cloud_interface", "internal_interface and cloud_interface must be two different names")
	}
	if len(n.DefaultDirection) != 2 {
		ps.Add("default_direction", "want two interface names: the offerer's, then the answerer's")
	} else if _, err := n.legsFor(n.DefaultDirection); err != nil {
		ps.Add("default_direction", "%v", err)
	}
	if d := n.OfferTimeout.D(); d < time.Second || d > time.Hour {
		ps.Add("offer_timeout", "%s: want 1s to 1h", d)
	}
	return ps.Err()
}

// legsFor maps a direction flag (offerer's interface, answerer's) to legs.
func (n *NGConfig) legsFor(dir []string) ([2]legID, error) {
	var out [2]legID
	if len(dir) != 2 {
		return out, errDirection
	}
	for i, name := range dir {
		switch name {
		case n.InternalInterface:
			out[i] = legInternal
		case n.CloudInterface:
			out[i] = legCloud
		default:
			return out, errDirection
		}
	}
	if out[0] == out[1] {
		return out, errDirection
	}
	return out, nil
}
