package soak

import (
	"strings"
	"testing"
	"time"
)

func samples(n int, f func(i int) Sample) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = f(i)
		out[i].T = float64(10 * i)
	}
	return out
}

func flat(i int) Sample {
	// A heap in use that saws between collections is no drift: the goal
	// is judged.
	return Sample{RSSKiB: 100000 + int64(i%2)*500, HeapBytes: float64(50<<20 + (i%3)*(10<<20)), HeapGoal: 75 << 20, Goroutines: 20000, FDs: 10050}
}

func TestEvaluate(t *testing.T) {
	o := DefaultOptions()
	o.WarmUp = time.Minute
	for _, tc := range []struct {
		name    string
		samples []Sample
		streams []StreamResult
		errors  []string
		want    string // a failure that must be reported; "" = pass
	}{
		{"flat", samples(30, flat), []StreamResult{{Name: "a", Sent: 100, Received: 100}}, nil, ""},
		{"rss grows", samples(30, func(i int) Sample {
			s := flat(i)
			s.RSSKiB += int64(i) * 1000 // 30 % over the run
			return s
		}), nil, nil, "RSS (KiB) drifted"},
		{"goroutines leak", samples(30, func(i int) Sample {
			s := flat(i)
			s.Goroutines += float64(i * 100)
			return s
		}), nil, nil, "goroutines drifted"},
		{"warm-up growth ignored", samples(30, func(i int) Sample {
			s := flat(i)
			if i < 6 {
				s.FDs -= 5000
			}
			return s
		}), nil, nil, ""},
		{"packet lost", samples(30, flat), []StreamResult{{Name: "a", Sent: 100, Received: 99}}, nil, "1 sampled packets lost"},
		{"undecryptable", samples(30, flat), []StreamResult{{Name: "a", Sent: 100, Received: 100, Bad: 2}}, nil, "did not decrypt"},
		{"error logged", samples(30, flat), nil, []string{"level=ERROR msg=x"}, "error lines"},
		{"too short", samples(5, flat), nil, nil, "samples after the warm-up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Result{Options: o, Samples: tc.samples, Streams: tc.streams, Errors: tc.errors}
			r.evaluate()
			if tc.want == "" {
				if !r.Pass {
					t.Fatalf("failed: %v", r.Failures)
				}
				return
			}
			if r.Pass || !strings.Contains(strings.Join(r.Failures, "\n"), tc.want) {
				t.Fatalf("failures %v, want one with %q", r.Failures, tc.want)
			}
		})
	}
}
