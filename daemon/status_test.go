package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/control"
)

// TestStatusJSONShape pins the keys, and their order, of each running
// component's object in GET /v1/status: clients parse it, so the typed
// component status must marshal as the untyped one did.
func TestStatusJSONShape(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse([]byte(`metrics: {listen: "127.0.0.1:0"}
control: {socket: "`+filepath.Join(dir, "me.sock")+`"}
relay:
  enabled: true
  realm: status.test
  listeners: [{transport: udp, addr: "127.0.0.1:0"}, {transport: tcp, addr: "127.0.0.1:0"}]
  relay_ip: 127.0.0.1
  auth: {generate_user: demo}
gateway:
  enabled: true
  workers: 1
policy:
  enabled: true
  mode: plan
`), dir, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	c := control.NewClient(cfg.Control.SocketPath(), "")
	defer c.Close()
	var st struct {
		Components map[string]json.RawMessage `json:"components"`
	}
	if err := c.Do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want []string // every key, in order
		must []string // keys that are always there (the rest are omitempty)
	}{
		{name: "relay", want: []string{"state", "listeners", "relay_addresses", "allocations", "users_with_allocations"}},
		{name: "gateway", want: []string{"state", "sessions", "max_sessions", "workers", "port_modes", "steering"}},
		{name: "policy",
			want: []string{"state", "detail", "mode", "uplink", "media", "desired", "actual", "pending",
				"last_reconcile", "last_trigger", "last_error", "repairs", "last_repair", "warnings"},
			must: []string{"state", "mode", "uplink", "media", "repairs"}},
	} {
		got := objectKeys(t, st.Components[tc.name])
		if tc.must == nil {
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s status keys = %v, want %v", tc.name, got, tc.want)
			}
			continue
		}
		if !isSubsequence(got, tc.want) {
			t.Errorf("%s status keys = %v, want a subsequence of %v", tc.name, got, tc.want)
		}
		for _, k := range tc.must {
			if !slices.Contains(got, k) {
				t.Errorf("%s status lacks %q: %v", tc.name, k, got)
			}
		}
	}
}

// objectKeys returns the top-level keys of a JSON object in order.
func objectKeys(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", raw)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%v in %s", err, raw)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("%v in %s", err, raw)
		}
	}
	return keys
}

// isSubsequence reports whether sub appears in seq in the same order.
func isSubsequence(sub, seq []string) bool {
	i := 0
	for _, s := range seq {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}
