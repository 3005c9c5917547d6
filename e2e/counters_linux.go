package e2e

import (
	"context"
)

// readCounters reads the counters of the interfaces of ns.
func readCounters(ctx context.Context, ns *Netns, ifaces ...string) (map[string]LinkCounters, error) {
	out, err := ns.IP(ctx, "-s", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	return parseLinkJSON([]byte(out), ifaces...)
}
