// Package gateway is a placeholder until the component lands.
package gateway

import (
	"context"

	"github.com/mediaedge/mediaedge/internal/component"
)

// Gateway is the gateway component.
type Gateway struct {
	cfg Config
	d   component.Deps
}

// New returns a Gateway for cfg.
func New(cfg Config, d component.Deps) (*Gateway, error) { return &Gateway{cfg: cfg, d: d}, nil }

// Start starts the component.
func (s *Gateway) Start(ctx context.Context) error { return nil }

// Reload applies cfg.
func (s *Gateway) Reload(ctx context.Context, cfg Config) error { s.cfg = cfg; return nil }

// Status reports the component's state.
func (s *Gateway) Status() any { return component.Status{State: "disabled"} }

// Close stops the component.
func (s *Gateway) Close() error { return nil }
