package testutil

import "golang.org/x/sys/unix"

// RaiseNoFile raises the soft RLIMIT_NOFILE toward n: to n when the
// process may (past the hard limit it needs CAP_SYS_RESOURCE), else to the
// hard limit. It returns the soft limit in force. The limit stays raised
// for the rest of the test binary, and processes it starts inherit it.
func RaiseNoFile(n uint64) uint64 {
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
