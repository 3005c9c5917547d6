package e2e

import (
	"fmt"
	"net/netip"
	"strings"
)

// EdgeConfig is what varies in the configuration file the scenario writes
// for `mediaedge run`.
type EdgeConfig struct {
	// ControlSocket is the control API's unix socket.
	ControlSocket string
	// UsersFile is the relay's static users file (relative to the
	// configuration file).
	UsersFile string
	// ExtraMediaPrefixes are added to the teams preset (policy.media.prefixes).
	ExtraMediaPrefixes []netip.Prefix
}

// Render returns the configuration file: relay, gateway and policy
// enabled, the media sockets marked with Mark, the policy enforcing on
// wan0. Every key is one a network admin would set on a real edge.
func (c EdgeConfig) Render() string {
	var prefixes []string
	for _, p := range c.ExtraMediaPrefixes {
		prefixes = append(prefixes, p.String())
	}
	return fmt.Sprintf(`# Written by the mediaedge end-to-end scenario (e2e/, docs/demo.md).
log:
  level: info
  format: text
metrics:
  listen: 127.0.0.1:%[1]d
control:
  socket: %[2]s

relay:
  enabled: true
  realm: mediaedge.test
  # Clients on the branch LAN reach the relay on the edge's LAN address.
  listeners:
    - transport: udp
      addr: %[3]s:%[4]d
    - transport: tcp
      addr: %[3]s:%[4]d
  udp_shards: 1
  # Relay sockets talk to the cloud from the uplink's address, marked so
  # that the policy routes them direct whatever the destination.
  relay_ip: %[5]s
  relay_ipv6: "%[11]s"
  ports: 50000-50999
  mark: %#[6]x
  auth:
    users_file: %[7]s
    generate_user: ""
  allowed_clients: [10.20.0.0/24]

gateway:
  enabled: true
  workers: 1
  internal:
    bind: %[3]s
    ports: 40000-40999
  cloud:
    bind: %[5]s
    ports: 45000-45999
    mark: %#[6]x
    # A re-key is announced (in the API's answer) before it is used.
    switch_delay: 1s

policy:
  enabled: true
  mode: enforce
  uplink:
    interface: %[8]s
    gateway4: %[9]s
    gateway6: "%[12]s"
  mark: %#[6]x
  match: prefix
  families: [ipv4, ipv6]
  media:
    presets: [teams]
    prefixes: [%[10]s]
  on_uplink_down: fallback
  on_stop: remove
`, MetricsPort, c.ControlSocket, EdgeLANAddr, TURNPort, EdgeWANAddr, Mark, c.UsersFile,
		ifEdgeWAN, WANGatewayAddr, strings.Join(prefixes, ", "), EdgeWANAddr6, WANGatewayAddr6)
}
