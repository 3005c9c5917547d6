//go:build !linux

package soak

import "errors"

// forceRcvbuf has no SO_RCVBUFFORCE to use here: bigBuffer falls back to
// SetReadBuffer.
func forceRcvbuf(uintptr, int) error { return errors.ErrUnsupported }
