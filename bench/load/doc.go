// Package load generates the bench's load and checks every packet it gets
// back: SRTP flows through a re-keying gateway (RunSRTP: synthetic or
// replayed streams, paced or windowed, SRTCP, re-keys) and TURN
// allocations echoing through a relay (RunTURN). Each run is bounded in
// packets and time, owns its sockets and goroutines, and returns a
// report.Report comparing what the receivers got with what was sent, with
// the system under test's CPU time and memory read from /proc when its PID
// is given.
package load
