package steer

import "net/netip"

// keys returns the map keys for a socket bound to local: one for its
// address family, and for a dual-stack IPv6 socket bound to "::" also the
// IPv4 wildcard, since its IPv4 datagrams reach the program as AF_INET.
func keys(local netip.AddrPort, dualStack bool) (ks [2]steerPortKey, n int) {
	a := local.Addr().Unmap()
	k := steerPortKey{Port: uint32(local.Port())}
	if a.Is4() {
		k.Family = afInet
		b := a.As4()
		k.Addr[0] = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	} else {
		k.Family = afInet6
		b := a.As16()
		for i := range k.Addr {
			k.Addr[i] = uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24
		}
	}
	ks[0], n = k, 1
	if dualStack && local.Addr().Is6() && a.IsUnspecified() {
		ks[1] = steerPortKey{Family: afInet, Port: uint32(local.Port())}
		n = 2
	}
	return ks, n
}

// Address families as the program sees them (ctx->family).
const (
	afInet  = 2
	afInet6 = 10
)
