// Package evloop is the event loop of mediaedge's UDP data paths (the TURN
// relay's workers and the SRTP gateway's workers), written once so that a
// fix to it reaches both.
//
// A Loop owns an epoll set of raw non-blocking sockets whose descriptor
// sits in Go's netpoller: its goroutine parks there until a socket is
// readable, a timer is due or Wake is called, then serves a round — every
// ready socket through the data path's Handler, the timers that are due,
// and a Flush of what the round produced. While datagrams keep coming it
// polls again without parking, and under load it coalesces: it sleeps a
// short window so that the next round takes many datagrams per system
// call. With little to batch it serves each datagram at once (see
// coalescer).
//
// Timers (Timer, Loop.Schedule) run on the loop's goroutine between
// rounds, a bounded number per round, and allocate nothing once a Timer
// exists: they carry retransmissions and housekeeping of the data paths.
//
// The Loop is Linux only; elsewhere New fails with ErrUnsupported. Timers
// and the coalescing decision are portable.
package evloop
