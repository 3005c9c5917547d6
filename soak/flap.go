package soak

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// UplinkGateway is the address of the far end of the soak's uplink veth.
const UplinkGateway = "198.51.100.1"

// FlapResult is one uplink flap: the policy's state while the uplink was
// down and how long after it came back the policy reported it running.
type FlapResult struct {
	T              float64
	StateDown      string
	StateUp        string
	RecoverSeconds float64
	Err            string
}

// policyState reads the policy component's state from GET /v1/status.
func (r *runState) policyState(ctx context.Context) string {
	var st struct {
		Components map[string]struct {
			State string `json:"state"`
		} `json:"components"`
	}
	if err := r.ctl.Do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return st.Components["policy"].State
}

func link(name, state string) error {
	if out, err := exec.Command("ip", "link", "set", name, state).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s %s: %w: %s", name, state, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitState polls the policy's state until it is want or d passes.
func (r *runState) waitState(ctx context.Context, want string, d time.Duration) (string, float64) {
	t0 := time.Now()
	st := ""
	for time.Since(t0) < d {
		if st = r.policyState(ctx); st == want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return st, time.Since(t0).Seconds()
}

// flap takes the uplink down for FlapDown every FlapEvery until ctx ends.
func (r *runState) flap(ctx context.Context) []FlapResult {
	var out []FlapResult
	t := time.NewTicker(r.o.FlapEvery)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
		f := FlapResult{T: time.Since(start).Seconds()}
		r.logf("uplink %s down", r.o.Uplink)
		downAt := time.Now()
		if err := link(r.o.Uplink, "down"); err != nil {
			f.Err = err.Error()
			out = append(out, f)
			continue
		}
		f.StateDown, _ = r.waitState(context.Background(), "degraded", r.o.FlapDown)
		time.Sleep(max(0, r.o.FlapDown-time.Since(downAt)))
		if err := link(r.o.Uplink, "up"); err != nil {
			f.Err = err.Error()
			out = append(out, f)
			return out
		}
		r.logf("uplink %s up", r.o.Uplink)
		f.StateUp, f.RecoverSeconds = r.waitState(context.Background(), "running", 30*time.Second)
		if f.StateDown != "degraded" {
			f.Err = "the policy did not report the uplink down (state " + f.StateDown + ")"
		} else if f.StateUp != "running" {
			f.Err = "the policy did not recover within 30 s (state " + f.StateUp + ")"
		}
		out = append(out, f)
	}
}
