//go:build !linux

package steer

import (
	"net/netip"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// Steerer has no implementation outside Linux: New fails with
// ErrUnsupported.
type Steerer struct{}

// New fails with ErrUnsupported.
func New() (*Steerer, error) { return nil, ErrUnsupported }

// AddTarget fails with ErrUnsupported.
func (s *Steerer) AddTarget(fd4, fd6 int) (Target, error) { return Target{}, ErrUnsupported }

// RemoveTarget does nothing.
func (s *Steerer) RemoveTarget(Target) error { return nil }

// Add fails with ErrUnsupported.
func (s *Steerer) Add(netip.AddrPort, bool, Target) error { return ErrUnsupported }

// Remove does nothing.
func (s *Steerer) Remove(netip.AddrPort, bool) error { return nil }

// Close does nothing.
func (s *Steerer) Close() error { return nil }

// OpenTarget fails with ErrUnsupported.
func OpenTarget(sockopt.Options) (int, int, error) { return -1, -1, ErrUnsupported }

// Steers returns false.
func (t Target) Steers(netip.AddrPort) bool { return false }

// Entries fails with ErrUnsupported.
func (s *Steerer) Entries() (int, error) { return 0, ErrUnsupported }
