// Command demo runs mediaedge's end-to-end scenario for people: it builds a
// branch office out of network namespaces, runs the real mediaedge on its
// edge, proves split tunnelling, TURN relaying and SRTP re-keying with real
// packets, and prints a PASS/FAIL line with evidence for each claim, then a
// summary. `make demo` runs it as root; docs/demo.md walks through it.
//
// It removes every namespace and process it made when it ends, also on
// SIGINT or SIGTERM, and removes the leftovers of a run that was killed.
package main
