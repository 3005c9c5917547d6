//go:build linux

package ngcall

import "golang.org/x/sys/unix"

// raiseNoFile raises the soft RLIMIT_NOFILE toward n (past the hard limit
// only with CAP_SYS_RESOURCE) and returns the soft limit in force.
// Processes the test starts inherit it.
func raiseNoFile(n uint64) uint64 {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil || l.Cur >= n {
		return l.Cur
	}
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: max(l.Max, n)}) == nil {
		return n
	}
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: min(n, l.Max), Max: l.Max}) == nil {
		return min(n, l.Max)
	}
	return l.Cur
}
