package e2e

import (
	"fmt"
	"strconv"
	"strings"
)

// nsName returns the namespace name for role in a run of prefix by pid.
func nsName(prefix string, pid int, role string) string {
	return fmt.Sprintf("%s-%d-%s", prefix, pid, role)
}

// parseNSName splits a namespace name made by nsName; ok is false for names
// of other runs or other software.
func parseNSName(prefix, name string) (pid int, role string, ok bool) {
	rest, found := strings.CutPrefix(name, prefix+"-")
	if !found {
		return 0, "", false
	}
	p, role, found := strings.Cut(rest, "-")
	if !found || role == "" {
		return 0, "", false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	return pid, role, true
}
