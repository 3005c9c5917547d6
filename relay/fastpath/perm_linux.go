package fastpath

import "golang.org/x/sys/unix"

// errPerm is what bpf(2) returns without CAP_BPF (or CAP_SYS_ADMIN).
var errPerm error = unix.EPERM
