// Package relay is a placeholder until the component lands.
package relay

import (
	"context"

	"github.com/mediaedge/mediaedge/internal/component"
)

// Server is the relay component.
type Server struct {
	cfg Config
	d   component.Deps
}

// New returns a Server for cfg.
func New(cfg Config, d component.Deps) (*Server, error) { return &Server{cfg: cfg, d: d}, nil }

// Start starts the component.
func (s *Server) Start(ctx context.Context) error { return nil }

// Reload applies cfg.
func (s *Server) Reload(ctx context.Context, cfg Config) error { s.cfg = cfg; return nil }

// Status reports the component's state.
func (s *Server) Status() any { return component.Status{State: "disabled"} }

// Close stops the component.
func (s *Server) Close() error { return nil }
