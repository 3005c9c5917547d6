package e2e

import (
	"net/netip"
	"strings"
)

// reverseMediaEntry reports whether a `conntrack -L` line is a flow whose
// original direction runs from the cloud media server to the client's
// private address: one made by a packet from the cloud, which the client's
// own packets then match in reverse, without NAT.
func reverseMediaEntry(line string) bool {
	f := strings.Fields(line)
	var src, dst []string
	for _, x := range f {
		switch {
		case strings.HasPrefix(x, "src="):
			src = append(src, x[4:])
		case strings.HasPrefix(x, "dst="):
			dst = append(dst, x[4:])
		}
	}
	if len(src) < 1 || len(dst) < 1 {
		return false
	}
	from, err1 := netip.ParseAddr(src[0])
	to, err2 := netip.ParseAddr(dst[0])
	return err1 == nil && err2 == nil && (from == CloudMediaAddr || from == CloudMediaAddr6) && (to == ClientAddr || to == ClientAddr6)
}
