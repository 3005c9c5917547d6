//go:build !linux

package main

import "os"

// isTerminal reports whether f is a character device, the best guess
// without the platform's terminal ioctl.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
