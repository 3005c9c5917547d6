package gateway

import (
	"errors"
	"fmt"
)

// Sentinels callers branch on. The control API maps them to error codes.
var (
	// ErrNotFound: no session with that id.
	ErrNotFound = errors.New("gateway: no such session")
	// ErrExists: a session with that id exists already.
	ErrExists = errors.New("gateway: session id in use")
	// ErrLimit: max_sessions reached, or no free port in a leg's range.
	ErrLimit = errors.New("gateway: limit reached")
	// ErrDraining: the gateway is draining (Drain) and refuses new
	// sessions.
	ErrDraining = errors.New("gateway: draining: new sessions are refused")
	// ErrClosed: the gateway is not running.
	ErrClosed = errors.New("gateway: not running")
	// ErrUnsupported: the platform has no data path (not Linux).
	ErrUnsupported = errors.New("gateway: the data path needs Linux (epoll, recvmmsg)")
)

// errSteeringOn is how Start fails with steering: on where it cannot run;
// the error wraps the reason (steer.ErrUnsupported and the step).
var errSteeringOn = errors.New("gateway: steering is \"on\" but cannot run")

// CryptoError says why an a=crypto attribute was refused. It never holds
// key material.
type CryptoError struct {
	Reason string
}

func (e *CryptoError) Error() string { return "gateway: a=crypto: " + e.Reason }

// RequestError is a session request the gateway refuses (bad address,
// suite not allowed, missing key). Field names the request field.
type RequestError struct {
	Field string
	Err   error
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("gateway: %s: %v", e.Field, e.Err)
}

func (e *RequestError) Unwrap() error { return e.Err }

// PortError says that a leg could not bind a local port.
type PortError struct {
	Leg string
	Err error
}

func (e *PortError) Error() string {
	return fmt.Sprintf("gateway: %s leg: binding a port: %v", e.Leg, e.Err)
}

func (e *PortError) Unwrap() error { return e.Err }

// errDirection: a direction flag that does not name the two legs.
var errDirection = errors.New("want two different interface names: the internal and the cloud leg's")

// reqError is an ng request refused, with the reason the proxy is told
// (error-reason). It never holds key material.
type reqError struct{ reason string }

func (e *reqError) Error() string { return e.reason }

func refuse(format string, a ...any) error { return &reqError{reason: fmt.Sprintf(format, a...)} }
