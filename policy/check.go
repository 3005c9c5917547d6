package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckQuery is a flow to look up the way the kernel routes it. The
// selectors matter: mediaedge's media rule may match only UDP to the media
// ports, so a lookup without protocol and port (a plain `ip route get`)
// shows the VPN for a flow that actually goes direct.
type CheckQuery struct {
	// Dst is the destination address.
	Dst netip.Addr
	// Src and Iif describe a forwarded flow (a LAN client's): its source
	// address and the interface it arrives on. Empty: a local socket.
	Src netip.Addr
	Iif string
	// Proto is unix.IPPROTO_UDP, unix.IPPROTO_TCP or 0 (unspecified).
	Proto int
	// Dport and Sport are the ports (0: unspecified).
	Dport, Sport uint16
	// Mark is the socket mark (0: none).
	Mark uint32
}

// String prints q the way `ip route get` takes it.
func (q CheckQuery) String() string {
	parts := []string{q.Dst.String()}
	if q.Src.IsValid() {
		parts = append(parts, "from", q.Src.String())
	}
	if q.Iif != "" {
		parts = append(parts, "iif", q.Iif)
	}
	if q.Mark != 0 {
		parts = append(parts, "mark", fmt.Sprintf("%#x", q.Mark))
	}
	if q.Proto != 0 {
		parts = append(parts, "ipproto", ipprotoName(q.Proto))
	}
	if q.Sport != 0 {
		parts = append(parts, "sport", strconv.Itoa(int(q.Sport)))
	}
	if q.Dport != 0 {
		parts = append(parts, "dport", strconv.Itoa(int(q.Dport)))
	}
	return strings.Join(parts, " ")
}

// CheckResult is the kernel's choice for a flow.
type CheckResult struct {
	// Type is unicast, unreachable, throw, blackhole...
	Type string `json:"type"`
	// Dev is the output interface ("" for reject routes).
	Dev string `json:"dev,omitempty"`
	// Gateway is the next hop, if any.
	Gateway string `json:"gateway,omitempty"`
	// Table is the table the route came from.
	Table string `json:"table"`
	// Src is the source address the kernel would pick.
	Src string `json:"src,omitempty"`
	// Refused is the kernel's error for a flow it will not route
	// (unreachable: what fail_closed installs).
	Refused string `json:"refused,omitempty"`
}

// String prints r like `ip route get` does.
func (r CheckResult) String() string {
	if r.Refused != "" {
		return "refused by the kernel: " + r.Refused
	}
	var b strings.Builder
	if r.Type != "" && r.Type != "unicast" {
		b.WriteString(r.Type + " ")
	}
	if r.Gateway != "" {
		b.WriteString("via " + r.Gateway + " ")
	}
	if r.Dev != "" {
		b.WriteString("dev " + r.Dev + " ")
	}
	b.WriteString("table " + r.Table)
	if r.Src != "" {
		b.WriteString(" src " + r.Src)
	}
	return b.String()
}

func ipprotoName(p int) string {
	switch p {
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_TCP:
		return "tcp"
	}
	return strconv.Itoa(p)
}
