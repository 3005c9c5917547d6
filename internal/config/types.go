package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("30s", "1h30m"). A bare integer is refused: it is ambiguous.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns the Go duration syntax.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration such as \"30s\", got a %s", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use a unit: \"500ms\", \"30s\", \"2h\")", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// AddrPort is an IP address and port written as "192.0.2.1:3478" or
// "[2001:db8::1]:3478". Host names are refused: a daemon binding sockets must
// not depend on DNS at start-up.
type AddrPort struct{ netip.AddrPort }

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *AddrPort) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want an address such as \"127.0.0.1:3478\", got a %s", kindName(n))
	}
	v, err := ParseAddrPort(n.Value)
	if err != nil {
		return err
	}
	a.AddrPort = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (a AddrPort) MarshalYAML() (any, error) { return a.String(), nil }

// ParseAddrPort parses "ip:port" and names what is wrong with it: a missing
// port, a port out of range, or a host name instead of an address.
func ParseAddrPort(s string) (netip.AddrPort, error) {
	host, port, ok := cutLast(s, ':')
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q has no port (want ip:port)", s)
	}
	p, err := strconv.ParseUint(port, 10, 64)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port %q is not a number", s, port)
	}
	if p > 65535 {
		return netip.AddrPort{}, fmt.Errorf("port %d out of range", p)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address (host names are not accepted)", host)
	}
	if ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: zoned addresses are not supported", s)
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// Prefix is a CIDR prefix ("192.0.2.0/24", "2001:db8::/32"). A bare address
// is accepted as a host prefix (/32 or /128). Host bits must be zero.
type Prefix struct{ netip.Prefix }

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a prefix such as \"192.0.2.0/24\", got a %s", kindName(n))
	}
	v, err := ParsePrefix(n.Value)
	if err != nil {
		return err
	}
	p.Prefix = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }

// ParsePrefix parses a CIDR prefix or a bare address, refusing host bits.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a prefix or address", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// PortRange is an inclusive range of ports written "40000-49999" or "3478".
type PortRange struct{ Min, Max uint16 }

// Len returns the number of ports in r.
func (r PortRange) Len() int {
	if r.Max < r.Min {
		return 0
	}
	return int(r.Max-r.Min) + 1
}

// Contains reports whether p is in r.
func (r PortRange) Contains(p uint16) bool { return p >= r.Min && p <= r.Max }

// String returns "min-max".
func (r PortRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(int(r.Min))
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *PortRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a port range such as \"40000-49999\", got a %s", kindName(n))
	}
	v, err := ParsePortRange(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r PortRange) MarshalYAML() (any, error) { return r.String(), nil }

// ParsePortRange parses "a-b" or "a" (1-65535, a <= b).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		hi = lo
	}
	a, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	b, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if a > b {
		return PortRange{}, fmt.Errorf("port range %q is reversed", s)
	}
	return PortRange{Min: a, Max: b}, nil
}

func parsePort(s string) (uint16, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	if v == 0 || v > 65535 {
		return 0, fmt.Errorf("port %d out of range", v)
	}
	return uint16(v), nil
}

// Mark is a 32-bit firewall mark (SO_MARK), written in decimal or as 0x hex.
type Mark uint32

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *Mark) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a mark such as 0x5354, got a %s", kindName(n))
	}
	v, err := strconv.ParseUint(n.Value, 0, 32)
	if err != nil {
		return fmt.Errorf("%q is not a 32-bit mark (decimal or 0x hex)", n.Value)
	}
	*m = Mark(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (m Mark) MarshalYAML() (any, error) { return m.String(), nil }

// String returns the mark in hex, as `ip rule` prints it.
func (m Mark) String() string { return fmt.Sprintf("%#x", uint32(m)) }

// ByteSize is a size in bytes written as an integer or with a binary suffix
// ("4MiB", "256KiB").
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a size such as \"4MiB\", got a %s", kindName(n))
	}
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a size (use bytes or KiB, MiB, GiB)", n.Value)
	}
	*b = ByteSize(v * mult)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return int64(b), nil }

// Bitrate is a rate in bits per second written as an integer or with a
// decimal suffix ("2Mbps", "500kbps"). Zero means unlimited where a field
// says so.
type Bitrate int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bitrate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a bit rate such as \"2Mbps\", got a %s", kindName(n))
	}
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Gbps", 1e9}, {"Mbps", 1e6}, {"kbps", 1e3}, {"bps", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a bit rate (use bps, kbps, Mbps, Gbps)", n.Value)
	}
	*b = Bitrate(v * mult)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b Bitrate) MarshalYAML() (any, error) { return int64(b), nil }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
