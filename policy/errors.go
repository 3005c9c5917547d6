package policy

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on. Every other error of the package is
// wrapped with the step that failed.
var (
	// ErrOverlap reports media prefixes that overlap each other (two
	// presets, a preset and an extra prefix, the media file) or overlap a
	// corporate prefix.
	ErrOverlap = errors.New("policy: overlapping prefixes")
	// ErrUplinkNotFound reports an uplink interface the kernel does not
	// know.
	ErrUplinkNotFound = errors.New("policy: uplink interface not found")
	// ErrMediaFile reports a media file that cannot be used.
	ErrMediaFile = errors.New("policy: bad media file")
	// ErrEndpoints reports a Microsoft 365 endpoints document that cannot be
	// imported.
	ErrEndpoints = errors.New("policy: bad Microsoft 365 endpoints document")
	// ErrReadback reports objects that the kernel acknowledged but that are
	// missing or different when read back: a kernel older than 4.17 drops
	// the ipproto, dport and protocol attributes of rules silently.
	ErrReadback = errors.New("policy: kernel state differs after apply")
	// ErrNoDirectPath is returned by Apply when no configured address
	// family has a usable uplink (no gateway, no address, link down):
	// nothing would go direct.
	ErrNoDirectPath = errors.New("policy: no address family has a usable uplink, nothing would go direct")
	// ErrClosed is returned by a Manager after Close.
	ErrClosed = errors.New("policy: manager closed")
	// ErrUnsupported is returned where netlink routing is unavailable (not
	// Linux).
	ErrUnsupported = errors.New("policy: policy routing needs Linux")
)

// OpError is a kernel operation that failed, named by the ip command that
// does the same thing.
type OpError struct {
	// Cmd is the equivalent ip command, e.g. "ip -4 rule add pref 1000 ...".
	Cmd string
	// Err is the kernel's answer (usually a syscall.Errno).
	Err error
}

func (e *OpError) Error() string { return fmt.Sprintf("policy: %s: %v", e.Cmd, e.Err) }

// Unwrap returns the kernel's error.
func (e *OpError) Unwrap() error { return e.Err }
