package policy

import (
	"time"

	"github.com/mediaedge/mediaedge/internal/component"
)

// Status is the policy component's state, as GET /v1/policy/status returns
// it. It is a snapshot: a value the caller owns.
type Status struct {
	component.Status
	// Mode is plan or enforce.
	Mode Mode `json:"mode"`
	// Uplink is the uplink's state as the last pass saw it.
	Uplink UplinkStatus `json:"uplink"`
	// Media summarises the media set.
	Media MediaStatus `json:"media"`
	// Desired is the rule set for the current configuration and uplink,
	// as `ip rule` / `ip route` lines.
	Desired []string `json:"desired,omitempty"`
	// Actual is what the kernel holds in mediaedge's protocols.
	Actual []string `json:"actual,omitempty"`
	// Pending are the ip commands still needed to turn Actual into Desired:
	// the plan in plan mode, what failed in enforce mode.
	Pending []string `json:"pending,omitempty"`
	// LastReconcile is when the last pass ran, and LastTrigger why.
	LastReconcile *time.Time `json:"last_reconcile,omitempty"`
	LastTrigger   string     `json:"last_trigger,omitempty"`
	// LastError is the last pass's error, if it had one.
	LastError string `json:"last_error,omitempty"`
	// Repairs counts passes that undid a change made by someone else;
	// LastRepair is the most recent.
	Repairs    uint64  `json:"repairs"`
	LastRepair *Repair `json:"last_repair,omitempty"`
	// Warnings are conditions an admin should look at: foreign rules that
	// shadow mediaedge's, kernel settings, lost notifications.
	Warnings []string `json:"warnings,omitempty"`
}

// UplinkStatus is the uplink's state.
type UplinkStatus struct {
	Interface string `json:"interface"`
	Index     int    `json:"index,omitempty"`
	// State is up, down, no-carrier, missing or unknown (plan mode without
	// an interface).
	State string        `json:"state"`
	IPv4  *FamilyStatus `json:"ipv4,omitempty"`
	IPv6  *FamilyStatus `json:"ipv6,omitempty"`
}

// FamilyStatus is the uplink's state for one address family.
type FamilyStatus struct {
	// Usable is true when media of this family goes direct.
	Usable bool `json:"usable"`
	// Reason says why not (or, in plan mode without the interface, why it
	// is only assumed).
	Reason    string   `json:"reason,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	Gateway   string   `json:"gateway,omitempty"`
	// GatewaySource is config, main table or remembered.
	GatewaySource string `json:"gateway_source,omitempty"`
}

// MediaStatus summarises the media set.
type MediaStatus struct {
	Match            Match    `json:"match"`
	Sources          []string `json:"sources,omitempty"`
	IPv4Prefixes     int      `json:"ipv4_prefixes"`
	IPv6Prefixes     int      `json:"ipv6_prefixes"`
	UDPPorts         []string `json:"udp_ports,omitempty"`
	PortOnlyUDPPorts []string `json:"port_only_udp_ports,omitempty"`
}

// Repair is a pass that undid someone else's change.
type Repair struct {
	At      time.Time `json:"at"`
	Trigger string    `json:"trigger"`
	Changes []string  `json:"changes"`
}

// ReconcileResult is the body of POST /v1/policy/reconcile.
type ReconcileResult struct {
	// Applied are the ip commands the pass ran (none in plan mode).
	Applied []string `json:"applied"`
	Error   string   `json:"error,omitempty"`
	Status  Status   `json:"status"`
}

// Report is the outcome of a one-shot command (plan, apply, inspect).
type Report struct {
	// Changes are the ip commands that were run (apply) or would be run
	// (plan, inspect).
	Changes []string
	// Status is the state after the command, as the daemon would report it.
	Status Status
}
