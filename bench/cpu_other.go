//go:build !linux

package bench

// pinToCPU is not supported here: the suite's figures are then not per
// core, which its report says.
func pinToCPU(int) bool { return false }
