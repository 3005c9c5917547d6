package relay

import (
	"net/netip"
	"testing"
)

func TestClientTable(t *testing.T) {
	var tab clientTable
	a, b := &alloc{id: 1}, &alloc{id: 2}
	v4 := netip.MustParseAddrPort("192.0.2.10:5000")
	v4other := netip.MustParseAddrPort("192.0.2.10:5001")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.10]:5000")
	v6 := netip.MustParseAddrPort("[2001:db8::10]:5000")
	tab.put(v4, a)
	tab.put(v6, b)
	for _, tc := range []struct {
		name string
		ap   netip.AddrPort
		want *alloc
	}{
		{"ipv4", v4, a},
		{"other port", v4other, nil},
		{"ipv4-mapped form is another key", mapped, nil},
		{"ipv6", v6, b},
	} {
		if got := tab.get(tc.ap); got != tc.want {
			t.Errorf("%s: get(%s) = %v, want %v", tc.name, tc.ap, got, tc.want)
		}
	}
	tab.del(v4, b) // not b's: stays
	if tab.get(v4) != a {
		t.Fatal("del of another allocation removed the entry")
	}
	tab.del(v4, a)
	tab.del(v6, b)
	if tab.get(v4) != nil || tab.get(v6) != nil {
		t.Fatal("entries left after del")
	}
}
