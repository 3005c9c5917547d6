//go:build !linux

package sut

import "errors"

// SocketPeerPID is only available on Linux.
func SocketPeerPID(path string) (int, error) {
	return 0, errors.New("sut: finding a socket's server PID needs Linux")
}
