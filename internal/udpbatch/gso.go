package udpbatch

import (
	"errors"
	"sync/atomic"
	"syscall"
)

// gsoStrikes is how many batches in a row must have a UDP GSO message
// refused (EIO or EINVAL), with no GSO message sent in between, before a
// GSO switch turns off: one refusal may concern one route or one message
// (EINVAL for a segment larger than the path MTU, EIO from a device that a
// single route uses), many in a row mean the path cannot do it.
const gsoStrikes = 8

// GSO is the one place that decides whether senders group runs of datagrams
// to one destination into UDP GSO messages, shared by every Sender given it
// (the workers of one component). It starts on when the kernel knows UDP
// GSO and turns off, for good, only after a persistent refusal: at once
// when the socket or kernel cannot do it at all (ENOPROTOOPT, EOPNOTSUPP),
// after gsoStrikes refused batches in a row when the kernel refused a
// message (EIO, EINVAL) that a later message might still get through.
// Refused messages are never lost: Sender sends them one datagram per
// message. Safe for concurrent use; it holds nothing to close.
type GSO struct {
	on      atomic.Bool
	strikes atomic.Int32
}

// NewGSO returns a GSO switch, on when the kernel supports UDP GSO.
func NewGSO() *GSO {
	g := &GSO{}
	g.on.Store(GSOSupported())
	return g
}

// Enabled reports whether senders group datagrams. A nil *GSO is off.
func (g *GSO) Enabled() bool { return g != nil && g.on.Load() }

// Disable turns GSO off (a configuration that asks for one datagram per
// message); it reports whether it was on.
func (g *GSO) Disable() bool { return g != nil && g.on.Swap(false) }

// observe records the outcome of one batch: refused is the kernel's error
// for the first GSO message it refused (nil: none), sent the GSO messages
// that went through. It returns a *GSODisabledError to the one caller whose
// batch turned GSO off, nil otherwise.
func (g *GSO) observe(refused error, sent uint64) error {
	if g == nil {
		return nil
	}
	if refused == nil {
		if sent > 0 && g.strikes.Load() != 0 {
			g.strikes.Store(0)
		}
		return nil
	}
	if !gsoPersistent(refused) && g.strikes.Add(1) < gsoStrikes {
		return nil
	}
	if g.on.Swap(false) {
		return &GSODisabledError{Err: refused}
	}
	return nil
}

// gsoPersistent reports a refusal that no later message can escape: the
// socket or the kernel does not do UDP_SEGMENT.
func gsoPersistent(err error) bool {
	return errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EOPNOTSUPP)
}

// GSODisabledError is what Sender.Send returns to the one call that turned
// its GSO switch off; Err is the kernel's last refusal. errors.Is(err,
// ErrGSODisabled) is true for it.
type GSODisabledError struct {
	Err error
}

func (e *GSODisabledError) Error() string {
	return "udpbatch: UDP GSO disabled after the kernel refused it: " + e.Err.Error()
}

// Unwrap returns the kernel's error.
func (e *GSODisabledError) Unwrap() error { return e.Err }

// Is reports ErrGSODisabled.
func (e *GSODisabledError) Is(target error) bool { return target == ErrGSODisabled }
