package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/bench/ngload"
	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/internal/component"
)

// TestBenchNG: `bench ng` sets up, measures and deletes its calls against
// a real gateway.ng listener: every request answered, paced at the rate,
// no session left behind (live calls included); a server that does not
// answer is an error.
func TestBenchNG(t *testing.T) {
	cfg := gateway.DefaultConfig()
	cfg.Workers = 1
	cfg.NG.Listen = "127.0.0.1:0"
	g, err := gateway.New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	out, _, err := runCLI(t, "bench", "ng", "--server", g.NGAddr().String(), "--calls", "30", "--rate", "300", "--live", "5", "--json")
	if err != nil {
		t.Fatalf("bench ng: %v\n%s", err, out)
	}
	var r ngload.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Calls != 30 || r.Requests != 90 || r.Errors != 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
		t.Errorf("result %+v", r)
	}
	// 30 calls at 300 a second take at least 29/300 s.
	if r.Elapsed.Seconds() < 29.0/300 {
		t.Errorf("30 calls at 300/s took %v: not paced", r.Elapsed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	if ss, err := g.Sessions(ctx); err != nil || len(ss) != 0 {
		t.Errorf("%d sessions left after the run (%v)", len(ss), err)
	}
	out, _, err = runCLI(t, "bench", "ng", "--server", g.NGAddr().String(), "--calls", "3")
	if err != nil || !strings.Contains(out, "p99") {
		t.Errorf("table: %v\n%s", err, out)
	}

	g.Close()
	if _, _, err := runCLI(t, "bench", "ng", "--server", g.NGAddr().String(), "--calls", "1", "--max-time", "1500ms"); err == nil {
		t.Error("no error from a server that does not answer")
	}
}
