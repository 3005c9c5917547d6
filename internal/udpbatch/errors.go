package udpbatch

import "errors"

var (
	// ErrBatchFull is what SendBatch.Add returns when the batch has no
	// room for another datagram: send it, Reset, and add the datagram
	// again.
	ErrBatchFull = errors.New("udpbatch: batch full")
	// ErrAddressFamily is what SendBatch.Add returns for a destination
	// the socket cannot reach: an IPv6 address on an IPv4 socket, or no
	// address at all. The datagram is not added; the caller counts it as
	// a send failure.
	ErrAddressFamily = errors.New("udpbatch: destination not reachable from this socket's address family")
	// ErrGSODisabled is what a *GSODisabledError matches: the kernel
	// refused UDP GSO persistently and the shared GSO switch turned off.
	// Nothing was lost; the caller logs it and updates its metrics once.
	ErrGSODisabled = errors.New("udpbatch: UDP GSO disabled")
	// ErrUnsupported is returned by the raw-descriptor functions outside
	// Linux.
	ErrUnsupported = errors.ErrUnsupported

	errEmptyBuffer = errors.New("udpbatch: read with an empty buffer")
)
