package e2e

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Check is one claim of the scenario with the evidence for or against it.
type Check struct {
	// Name is a short claim, e.g. "media leaves on the direct uplink".
	Name string
	// Pass is true when the evidence supports the claim.
	Pass bool
	// Evidence are the observations, one per line, with numbers.
	Evidence []string
	// Took is how long the step took.
	Took time.Duration
	// Overload, set on a failed check when the machine was overloaded as
	// it ended, describes the load.
	Overload string
}

// checker builds one Check: evidence lines accumulate and any failed
// expectation makes it fail.
type checker struct {
	c     Check
	start time.Time
}

func newChecker(name string) *checker {
	return &checker{c: Check{Name: name, Pass: true}, start: time.Now()}
}

// note adds evidence.
func (k *checker) note(format string, args ...any) {
	k.c.Evidence = append(k.c.Evidence, fmt.Sprintf(format, args...))
}

// expect adds evidence and fails the check unless ok. Failed lines are
// marked so that they stand out.
func (k *checker) expect(ok bool, format string, args ...any) bool {
	line := fmt.Sprintf(format, args...)
	if !ok {
		k.c.Pass = false
		line = "✗ " + line
	}
	k.c.Evidence = append(k.c.Evidence, line)
	return ok
}

// fail records an error that stopped the step.
func (k *checker) fail(err error) {
	k.c.Pass = false
	k.c.Evidence = append(k.c.Evidence, "✗ "+err.Error())
}

func (k *checker) done() Check {
	k.c.Took = time.Since(k.start)
	if !k.c.Pass {
		if l := MeasureLoad(); l.Overloaded() {
			k.c.Overload = l.String()
		}
	}
	return k.c
}

// WriteCheck prints a check as a PASS/FAIL line followed by its evidence.
func WriteCheck(w io.Writer, c Check) {
	verdict := "PASS"
	if !c.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s  %s (%s)\n", verdict, c.Name, c.Took.Round(10*time.Millisecond))
	if c.Overload != "" {
		fmt.Fprintf(w, "        ! the machine is overloaded (%s): timing evidence below may reflect the machine, not mediaedge\n", c.Overload)
	}
	for _, e := range c.Evidence {
		for _, line := range strings.Split(e, "\n") {
			fmt.Fprintf(w, "        %s\n", line)
		}
	}
}

// WriteSummary prints one line per check and the verdict.
func WriteSummary(w io.Writer, r *Result) {
	passed, overloaded := 0, ""
	fmt.Fprintln(w, "Summary")
	for _, c := range r.Checks {
		mark := "PASS"
		if c.Pass {
			passed++
		} else {
			mark = "FAIL"
		}
		note := ""
		if c.Overload != "" {
			note, overloaded = " (machine overloaded)", c.Overload
		}
		fmt.Fprintf(w, "  %s  %s%s\n", mark, c.Name, note)
	}
	var verdict string
	switch {
	case !r.Complete:
		verdict = "the scenario did not run to the end"
	case r.Passed():
		verdict = "the edge works end to end"
	default:
		verdict = "the edge does NOT work end to end"
	}
	fmt.Fprintf(w, "%d of %d checks passed in %s: %s.\n", passed, len(r.Checks), r.Took.Round(100*time.Millisecond), verdict)
	if overloaded != "" {
		fmt.Fprintf(w, "The machine was overloaded when checks failed (last: %s); run the demo again on a quieter machine before reading the failures as mediaedge's.\n", overloaded)
	}
}

// Result is what Run found.
type Result struct {
	Checks []Check
	// WorkDir holds the configuration, the daemon log and the captures;
	// removed at the end unless Options.KeepWorkDir.
	WorkDir string
	// DaemonLog is the tail of mediaedge's output, for failure reports.
	DaemonLog string
	// Complete is true when every step ran (not interrupted, not stopped
	// by a failure that left nothing more to check).
	Complete bool
	Took     time.Duration
}

// Passed reports whether every step ran and every check passed.
func (r *Result) Passed() bool {
	if r == nil || !r.Complete || len(r.Checks) == 0 {
		return false
	}
	for _, c := range r.Checks {
		if !c.Pass {
			return false
		}
	}
	return true
}
