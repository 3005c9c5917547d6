//go:build !linux

package policy

import (
	"context"

	"github.com/mediaedge/mediaedge/internal/component"
)

// Manager is the policy component. Policy routing needs Linux: elsewhere
// the Manager validates its configuration and refuses to start.
type Manager struct{ cfg Config }

// New returns a Manager for cfg.
func New(cfg Config, _ component.Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg}, nil
}

// Start fails with ErrUnsupported.
func (m *Manager) Start(context.Context) error { return ErrUnsupported }

// Reload checks cfg and keeps it.
func (m *Manager) Reload(_ context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.cfg = cfg
	return nil
}

// Status reports that the component cannot run here.
func (m *Manager) Status() Status {
	return Status{Status: component.Status{State: "stopped", Detail: ErrUnsupported.Error()}}
}

// Close does nothing.
func (m *Manager) Close() error { return nil }

// Plan fails with ErrUnsupported.
func Plan(context.Context, Config) (Report, error) { return Report{}, ErrUnsupported }

// Apply fails with ErrUnsupported.
func Apply(context.Context, Config) (Report, error) { return Report{}, ErrUnsupported }

// Inspect fails with ErrUnsupported.
func Inspect(context.Context, Config) (Report, error) { return Report{}, ErrUnsupported }

// Flush fails with ErrUnsupported.
func Flush(context.Context, int) ([]string, error) { return nil, ErrUnsupported }

// Check fails with ErrUnsupported.
func Check(CheckQuery) (CheckResult, error) { return CheckResult{}, ErrUnsupported }
