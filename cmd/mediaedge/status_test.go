package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/daemon"
)

// TestStatusScreen renders the summary of a daemon whose last reload was
// refused and which is draining.
func TestStatusScreen(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	reload := now.Add(-90 * time.Second)
	st := statusView{StatusReport: daemon.StatusReport{
		Version: "v1.4.0", Commit: "3f2c1a9e0b7d11223344", GoVersion: "go1.26.8",
		StartedAt: now.Add(-3 * time.Hour), UptimeSeconds: 3 * 3600, ConfigFile: "/etc/mediaedge/mediaedge.yaml",
		LastReload: &reload, ReloadError: "relay: changing realm needs a restart",
		Drain: &daemon.DrainStatus{Since: now.Add(-time.Minute), Deadline: now.Add(9 * time.Minute), Allocations: 3, Sessions: 1},
	}, Components: map[string]json.RawMessage{
		"relay":   json.RawMessage(`{"state":"running","allocations":3,"users_with_allocations":2,"draining":true,"listeners":["udp 10.20.0.1:3478 (4 shards, gso)"]}`),
		"gateway": json.RawMessage(`{"state":"running","sessions":1,"max_sessions":1000,"workers":4,"draining":true}`),
		"policy":  json.RawMessage(`{"state":"disabled"}`),
	}}
	var b bytes.Buffer
	printDaemonStatus(&b, &st, now)
	want := `mediaedge v1.4.0 (3f2c1a9e0b7d), go1.26.8
uptime       3h0m0s (since 2026-12-06T22:00:00Z)
config       /etc/mediaedge/mediaedge.yaml
last reload  2026-12-07T00:58:30Z (1m30s ago): FAILED, running the previous configuration: relay: changing realm needs a restart
drain        draining since 2026-12-07T00:59:00Z, stops by 2026-12-07T01:09:00Z (in 9m0s): 3 allocation(s), 1 session(s) left
relay        running, 3 allocation(s) of 2 user(s), refusing new allocations (draining); udp 10.20.0.1:3478 (4 shards, gso)
gateway      running, 1 of 1000 session(s), 4 worker(s), refusing new sessions (draining)
policy       disabled
`
	if got := b.String(); got != want {
		t.Errorf("status screen:\n%s\nwant:\n%s", got, want)
	}
}
