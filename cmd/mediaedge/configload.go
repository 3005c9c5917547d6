package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/config"
)

// installedConfigPath is where `make install` puts the configuration. A
// variable so that tests can point it elsewhere.
var installedConfigPath = "/etc/mediaedge/mediaedge.yaml"

// loadCLIConfig loads the configuration of a command whose --config is
// optional: path when given; without it installedConfigPath when that
// exists, else the embedded default as `run` uses it (said on stderr). name
// is how to refer to the source in messages.
func loadCLIConfig(path string, opts config.Options, stderr io.Writer) (cfg daemon.Config, name string, err error) {
	if path == "" {
		if _, err := os.Stat(installedConfigPath); err == nil {
			path = installedConfigPath
		} else if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "mediaedge: no --config and no %s: using the embedded default (mediaedge config default)\n", installedConfigPath)
			cfg, err := daemon.Load("", opts)
			return cfg, "embedded default", err
		} else {
			path = installedConfigPath // unreadable: let Load say why
		}
	}
	cfg, err = daemon.Load(path, opts)
	return cfg, path, err
}
