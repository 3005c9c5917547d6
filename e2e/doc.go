// Package e2e is mediaedge's end-to-end scenario: the whole edge, built
// from network namespaces on one Linux machine, driven with real packets.
//
// Four namespaces stand for the hosts of a branch office: an internal client,
// the edge running the real `mediaedge run` binary (relay, gateway and policy
// enabled, sockets marked), a VPN concentrator holding the edge's full-tunnel
// default route (with a corporate host behind it), and "the internet"
// holding a cloud media server inside Microsoft Teams' published media prefix
// and another cloud host. Links are veth pairs; the edge masquerades on its
// direct uplink with nftables.
//
// Run proves, one Check at a time, that media relayed by TURN and re-keyed
// by the SRTP gateway leaves on the direct uplink while everything else keeps
// using the VPN, that the cloud side only ever sees SRTP under the cloud
// key, that audio arrives intact, that metrics report it, and that an uplink
// flap, a SIGHUP with a new media prefix list and a SIGTERM behave. The test
// in this package runs it under `make test` (as root); cmd/demo runs it for
// people (`make demo`, docs/demo.md).
//
// Everything the scenario makes is named with a prefix and the process ID
// (namespaces "<prefix>-<pid>-<role>"), removed when it ends, and removed
// by the next run if the process died before it could clean up.
package e2e
