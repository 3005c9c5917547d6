package gateway

import (
	_ "embed"
)

// DefaultYAML is the commented `gateway:` section of the embedded default
// configuration (without the section key), as `mediaedge config default`
// prints it.
//
//go:embed default.yaml
var DefaultYAML string

// Config is the `gateway` section of the configuration.
type Config struct {
	// Enabled turns the component on.
	Enabled bool `yaml:"enabled"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{} }

// Validate implements config.Validator.
func (c *Config) Validate() error { return nil }
