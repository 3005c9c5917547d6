package steer

import "errors"

// ErrUnsupported reports that this build, kernel or process cannot steer:
// not Linux, a kernel without sk_lookup (before 5.9) or without UDP
// sockets in a SOCKMAP, or no CAP_BPF and CAP_NET_ADMIN. The error that
// wraps it says which; callers on `auto` run without steering.
var ErrUnsupported = errors.New("steer: not supported here")

// ErrClosed reports a call on a closed Steerer.
var ErrClosed = errors.New("steer: closed")

// ErrFull reports that every target slot is in use.
var ErrFull = errors.New("steer: no free target slot")
