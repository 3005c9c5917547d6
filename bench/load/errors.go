package load

import (
	"errors"
	"fmt"
)

// ErrBadOptions means a run was asked for with inconsistent options.
var ErrBadOptions = errors.New("load: bad options")

// errNoKey: no key of a stream authenticates a packet.
var errNoKey = errors.New("load: no key authenticates the packet")

// optionError reports a bad option with its name.
func optionError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadOptions, fmt.Sprintf(format, args...))
}
