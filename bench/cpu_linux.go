package bench

import "golang.org/x/sys/unix"

// pinToCPU binds the calling process to one CPU; false if the kernel
// refused.
func pinToCPU(cpu int) bool {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set) == nil
}
