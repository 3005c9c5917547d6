package udpbatch

import (
	"errors"
	"syscall"
)

// IsAddrInUse reports whether err is a bind that failed because another
// socket holds the address and port (EADDRINUSE): a caller searching a
// port range tries the next port.
func IsAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
