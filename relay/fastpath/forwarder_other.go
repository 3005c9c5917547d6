//go:build !linux

package fastpath

import "net/netip"

// Forwarder is the in-kernel fast path; on this platform it does not exist
// and New returns ErrUnsupported.
type Forwarder struct{}

// New returns ErrUnsupported: the fast path needs Linux.
func New() (*Forwarder, error) { return nil, ErrUnsupported }

// Attach returns ErrUnsupported.
func (f *Forwarder) Attach(int) error { return ErrUnsupported }

// Add returns ErrUnsupported.
func (f *Forwarder) Add(Entry) error { return ErrUnsupported }

// Remove does nothing.
func (f *Forwarder) Remove(Entry) (Counters, error) { return Counters{}, nil }

// Counters returns ErrUnsupported.
func (f *Forwarder) Counters(Entry) (Counters, error) { return Counters{}, ErrUnsupported }

// Peers returns ErrUnsupported.
func (f *Forwarder) Peers() ([]netip.AddrPort, error) { return nil, ErrUnsupported }

// Close does nothing.
func (f *Forwarder) Close() error { return nil }

// OnRouteChange does nothing: there are no routes to follow.
func (f *Forwarder) OnRouteChange(func()) {}

// TakeFaults returns 0.
func (f *Forwarder) TakeFaults() uint64 { return 0 }

// Snapshot returns ErrUnsupported.
func (f *Forwarder) Snapshot(*Snapshot) error { return ErrUnsupported }
