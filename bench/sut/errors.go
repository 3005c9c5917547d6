package sut

import (
	"fmt"

	"github.com/mediaedge/mediaedge/bench/load"
)

// optionError reports a bad option with its name, wrapping
// load.ErrBadOptions: one sentinel for bad options across the bench.
func optionError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", load.ErrBadOptions, fmt.Sprintf(format, args...))
}
