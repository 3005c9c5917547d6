package fastpath

import "errors"

// ErrUnsupported reports that this build or kernel cannot run the fast path
// (not Linux, no BPF, no TCX); callers on `auto` fall back to user space.
var ErrUnsupported = errors.New("fastpath: not supported here")

// errInvalidEntry reports an entry the program cannot forward: addresses of
// mixed families (an IPv4 client on an IPv6 allocation, RFC 6156) or a
// channel number outside 0x4000-0x7FFF. Such channels stay in user space.
var errInvalidEntry = errors.New("fastpath: entry mixes address families or has no valid channel")

var errClosed = errors.New("fastpath: forwarder closed")

// ErrNoRoute reports an entry refused because a direction's destination
// has no usable route (none, or blackhole, unreachable or prohibit): user
// space meets the same refusal when it sends. A change of routes may cure
// it; see Forwarder.OnRouteChange.
var ErrNoRoute = errors.New("fastpath: no usable route")
