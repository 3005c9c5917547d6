// Package steer hands UDP datagrams addressed to many sockets to one
// socket of the caller's choice, with an sk_lookup BPF program
// (BPF_PROG_TYPE_SK_LOOKUP, Linux 5.9) attached to the network namespace.
//
// A data path that keeps one socket per flow (the gateway's per-call
// ports) pays one wake-up and one receive system call per datagram, since
// each socket holds at most a few. Steered, the datagrams of all those
// ports queue on one target socket per event loop, which drains them in
// batches (recvmmsg) and learns each datagram's original destination from
// its IP_ORIGDSTADDR / IPV6_ORIGDSTADDR control message (udpbatch.RecvBatch
// with control messages). The per-flow sockets stay open, bound and
// sending: only their receive side moves.
//
// The caller registers (local address, port) -> target with Add and removes
// the entry with Remove before it closes the socket bound there; a
// datagram to a port that has no entry, to a registered port on another
// local address, or of another protocol, is left to the kernel's normal
// lookup. The program is attached with a bpf_link that only this process
// holds (never pinned): when the process ends, SIGKILL included, the kernel
// detaches it and frees its maps.
package steer

// Target is a pair of sockets that receive steered datagrams, one per
// address family, as added to a Steerer with AddTarget.
type Target struct {
	slot     uint32
	fd4, fd6 int // -1: none
}

// FD4 returns the IPv4 target socket's descriptor (-1: none).
func (t Target) FD4() int { return t.fd4 }

// FD6 returns the IPv6 target socket's descriptor (-1: none).
func (t Target) FD6() int { return t.fd6 }
