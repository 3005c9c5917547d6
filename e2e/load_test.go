package e2e

import (
	"strings"
	"testing"
	"time"
)

func TestLoadOverloaded(t *testing.T) {
	tests := []struct {
		name string
		in   Load
		want bool
	}{
		{"quiet", Load{Load1: 0.5, CPUs: 2, WakeLate: 100 * time.Microsecond}, false},
		{"busy but keeping up", Load{Load1: 2, CPUs: 2, WakeLate: 2 * time.Millisecond}, false},
		{"more runnable tasks than CPUs", Load{Load1: 12, CPUs: 2}, true},
		{"late wake-ups", Load{Load1: 1, CPUs: 2, WakeLate: 35 * time.Millisecond}, true},
		{"no load average (not Linux)", Load{CPUs: 4, WakeLate: time.Millisecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.Overloaded(); got != tt.want {
				t.Errorf("%+v.Overloaded() = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseLoadavg(t *testing.T) {
	for in, want := range map[string]float64{"12.34 9.01 3.81 30/287 9054\n": 12.34, "": 0, "x": 0} {
		if got := parseLoadavg(in); got != want {
			t.Errorf("parseLoadavg(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestFailLineNamesOverload: a failed check that ended on an overloaded
// machine says so next to its FAIL line and in the summary; a passed one
// never carries the notice.
func TestFailLineNamesOverload(t *testing.T) {
	l := Load{Load1: 12, CPUs: 2, WakeLate: 40 * time.Millisecond}
	failed := Check{Name: "audio arrives", Overload: l.String(), Evidence: []string{"✗ in the window 553/554"}}
	passed := Check{Name: "keys", Pass: true}
	var b strings.Builder
	WriteCheck(&b, failed)
	lines := strings.Split(b.String(), "\n")
	if !strings.HasPrefix(lines[0], "FAIL") || !strings.Contains(lines[1], "overloaded (load average 12.0 on 2 CPUs") {
		t.Errorf("FAIL line without the overload notice after it:\n%s", b.String())
	}
	b.Reset()
	WriteSummary(&b, &Result{Checks: []Check{passed, failed}, Complete: true})
	if !strings.Contains(b.String(), "FAIL  audio arrives (machine overloaded)") || !strings.Contains(b.String(), "quieter machine") {
		t.Errorf("summary without the overload notice:\n%s", b.String())
	}
	if strings.Contains(b.String(), "keys (machine") {
		t.Errorf("a passed check carries the notice:\n%s", b.String())
	}
	// done() measures only for a failed check.
	k := newChecker("x")
	k.expect(true, "fine")
	if c := k.done(); c.Overload != "" {
		t.Errorf("a passed check measured the load: %q", c.Overload)
	}
}
