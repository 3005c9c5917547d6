//go:build !linux

package evloop

import "time"

// Handler is a data path's packet logic; see the Linux build.
type Handler interface {
	Round(now int64)
	Ready(tag int32) (n int, full bool)
	Woken()
	Flush()
}

// Config is what New needs; see the Linux build.
type Config struct {
	Name        string
	Clock       func() int64
	MinBatch    int
	TimerBudget int
}

// DefaultTimerBudget is the timers a round fires by default.
const DefaultTimerBudget = 64

// Loop is Linux only.
type Loop struct{}

// New fails with ErrUnsupported.
func New(Config) (*Loop, error) { return nil, ErrUnsupported }

// Add fails with ErrUnsupported.
func (l *Loop) Add(fd int, tag int32) error { return ErrUnsupported }

// Remove does nothing.
func (l *Loop) Remove(fd int) {}

// Wake does nothing.
func (l *Loop) Wake() {}

// SetCoalesce does nothing.
func (l *Loop) SetCoalesce(time.Duration) {}

// Sleeps returns 0.
func (l *Loop) Sleeps() uint64 { return 0 }

// Now returns 0.
func (l *Loop) Now() int64 { return 0 }

// Schedule does nothing.
func (l *Loop) Schedule(t *Timer, when int64) {}

// Cancel returns false.
func (l *Loop) Cancel(t *Timer) bool { return false }

// Stop does nothing.
func (l *Loop) Stop() {}

// Run fails with ErrUnsupported.
func (l *Loop) Run(Handler) error { return ErrUnsupported }

// Close does nothing.
func (l *Loop) Close() error { return nil }
