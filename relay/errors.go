package relay

import (
	"errors"
	"fmt"
)

var (
	// ErrRestartNeeded is returned by Reload for changes that cannot be
	// applied to a running relay (listeners, realm, relay addresses, port
	// range, shards, mark); the relay keeps its previous configuration.
	ErrRestartNeeded = errors.New("relay: change needs a restart")
	// ErrNoAllocation is returned by Kill and KillUser when there is no
	// such allocation.
	ErrNoAllocation = errors.New("relay: no allocation")

	errNoSecret       = errors.New("relay: no REST shared secret")
	errPortsExhausted = errors.New("relay: no free port in the relay port range")
	errQuota          = errors.New("relay: allocation quota reached")
	errClosed         = errors.New("relay: closed")
	errDraining       = errors.New("relay: draining: new allocations are refused")
	errNoFamily       = errors.New("relay: no relay address for this address family")
	errSendFailed     = errors.New("relay: the kernel refused the datagram")
)

// restartError names the setting a reload cannot change.
type restartError struct{ what string }

func (e *restartError) Error() string {
	return fmt.Sprintf("relay: changing %s needs a restart; the relay keeps running with the previous configuration", e.what)
}

func (e *restartError) Unwrap() error { return ErrRestartNeeded }
