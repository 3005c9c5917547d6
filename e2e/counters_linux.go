package e2e

import (
	"context"
	"time"
)

// quietLimit bounds the waits for packets in flight to arrive and be
// counted: generous, since it only bounds a wait that ends as soon as
// they have.
const quietLimit = 10 * time.Second

// countersWhen reads the counters of ns's interfaces until ok holds for
// them or limit passes, and returns the last reading. Counters only grow:
// a later reading never misses what an earlier one counted.
func countersWhen(ctx context.Context, ns *Netns, limit time.Duration, ok func(map[string]LinkCounters) bool, ifaces ...string) (map[string]LinkCounters, error) {
	var c map[string]LinkCounters
	var err error
	waitFor(ctx, limit, func() bool {
		c, err = readCounters(ctx, ns, ifaces...)
		return err == nil && ok(c)
	})
	return c, err
}

// readCounters reads the counters of the interfaces of ns.
func readCounters(ctx context.Context, ns *Netns, ifaces ...string) (map[string]LinkCounters, error) {
	out, err := ns.IP(ctx, "-s", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	return parseLinkJSON([]byte(out), ifaces...)
}
