package ng

import (
	"errors"
	"fmt"
)

// ErrSDP is wrapped by every error about an SDP body.
var ErrSDP = errors.New("ng: SDP")

// DecodeError says why a message is not valid bencode. Offset is where the
// decoder stopped.
type DecodeError struct {
	Offset int
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("ng: bencode at byte %d: %s", e.Offset, e.Reason)
}
