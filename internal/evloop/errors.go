package evloop

import "errors"

var (
	// ErrUnsupported is what New returns outside Linux.
	ErrUnsupported = errors.ErrUnsupported
	// ErrClosed is what Add returns once the Loop is closed.
	ErrClosed = errors.New("evloop: loop closed")
)
