// Package policy is mediaedge's split-tunnel policy routing: on an edge
// whose default route goes into a full-tunnel VPN, it sends real-time media
// out through the direct uplink with Linux policy routing (rules and routes
// over netlink, no shell-outs), while everything else keeps using the VPN.
//
// Desired state is data. The configuration (mode, uplink, media presets,
// prefixes and ports, tables, priority, routing protocol) and the uplink's
// state as the kernel reports it make a rule set (state_linux.go), rendered
// as `ip rule` / `ip route` text (render_linux.go). A reconciler compares it
// with what the kernel holds in mediaedge's routing protocol and applies the
// difference, adding before deleting (reconcile_linux.go). It reaches the
// kernel only through nlHandle, the *netlink.Handle methods it calls, which
// the unit tests replace with a fake kernel that keeps its tables in memory
// and renders them as ip text.
//
// A Manager is the daemon's component: New, Start (the first pass, then a
// watcher of link, address, route and rule notifications plus a periodic
// re-check), Reload and Close. In mode plan it only reports what it would
// change. Plan, Apply, Flush and Check are the one-shot operations behind
// `mediaedge policy`. Policy routing needs Linux: elsewhere New and Reload
// only validate the configuration, and Start, Plan, Apply, Flush and Check
// fail with ErrUnsupported.
//
// docs/policy.md describes the rule set and the configuration.
package policy
