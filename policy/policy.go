// Package policy is a placeholder until the component lands.
package policy

import (
	"context"

	"github.com/mediaedge/mediaedge/internal/component"
)

// Manager is the policy component.
type Manager struct {
	cfg Config
	d   component.Deps
}

// New returns a Manager for cfg.
func New(cfg Config, d component.Deps) (*Manager, error) { return &Manager{cfg: cfg, d: d}, nil }

// Start starts the component.
func (s *Manager) Start(ctx context.Context) error { return nil }

// Reload applies cfg.
func (s *Manager) Reload(ctx context.Context, cfg Config) error { s.cfg = cfg; return nil }

// Status reports the component's state.
func (s *Manager) Status() any { return component.Status{State: "disabled"} }

// Close stops the component.
func (s *Manager) Close() error { return nil }
