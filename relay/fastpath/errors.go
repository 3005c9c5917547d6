package fastpath

import "errors"

// ErrUnsupported reports that this build or kernel cannot run the fast path
// (not Linux, no BPF, no TCX); callers on `auto` fall back to user space.
var ErrUnsupported = errors.New("fastpath: not supported here")

// ErrNotIPv4 reports an entry whose addresses are not all IPv4; this slice of
// the fast path forwards IPv4 only and leaves IPv6 channels in user space.
var ErrNotIPv4 = errors.New("fastpath: entry is not IPv4")

var errClosed = errors.New("fastpath: forwarder closed")
