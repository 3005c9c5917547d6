// Package component defines what the daemon hands to each of its components
// (relay, gateway, policy) and the life cycle they share.
//
// Every component package follows the same shape:
//
//	type Config struct{ ... }            // its YAML section, with yaml tags
//	func DefaultConfig() Config          // documented defaults
//	func (c *Config) Validate() error    // config.Problems with relative paths
//	func New(cfg Config, d component.Deps) (*T, error)       // validates cfg itself
//	func (t *T) Start(ctx context.Context) error             // bind, then return
//	func (t *T) Reload(ctx context.Context, cfg Config) error // validate, apply without dropping sessions
//	func (t *T) Status() S                                    // S embeds Status: a Report
//	func (t *T) Close() error                                 // idempotent, bounded
//
// and embeds its commented default section as DefaultYAML.
package component

import (
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/internal/control"
)

// Deps are the shared services a component receives from the daemon. All
// fields are set by the daemon; tests may leave Control nil (no routes) and
// pass prometheus.NewRegistry() as Registry.
type Deps struct {
	// Logger already carries the attribute component=<name>.
	Logger *slog.Logger
	// Registry is where the component registers its metrics.
	Registry prometheus.Registerer
	// Control is the control API; the component registers its routes in
	// New. Nil when there is none.
	Control *control.Server
	// Console receives the few one-time messages meant for the operator's
	// terminal and not for logs, such as credentials generated for the
	// embedded default configuration. Nil discards them.
	Console io.Writer
}

// Status is the common part of every component's status.
type Status struct {
	// State is "disabled", "starting", "running", "degraded" or "stopped".
	State string `json:"state"`
	// Detail says why a component is degraded; empty otherwise.
	Detail string `json:"detail,omitempty"`
}

// Report is a component's part of GET /v1/status: Status itself, or a
// struct of the component's own (relay.Status, gateway.Status,
// policy.Status) that embeds Status, which is what makes it a Report. It
// is a value the caller owns; its JSON is the component's object in the
// status report.
type Report interface {
	report() Status
}

func (s Status) report() Status { return s }
