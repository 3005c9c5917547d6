package config

import (
	"errors"
	"fmt"
	"strings"
)

// Problem is one thing wrong with a configuration: where (a key path such as
// "relay.listeners[1].addr" and, when known, the line of the file) and what.
type Problem struct {
	Path string
	Line int
	Msg  string
}

// String formats p as "relay.listeners[1].addr: port 70000 out of range (line 12)".
func (p Problem) String() string {
	var b strings.Builder
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", p.Line)
	}
	return b.String()
}

// Problems is a list of configuration problems. A non-empty Problems is an
// error; use Err to get a nil error from an empty list.
type Problems []Problem

// Add records a problem at path (relative to the value being validated; ""
// for the value itself).
func (ps *Problems) Add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// AddErr records err at path. A Problems error is merged with its paths
// prefixed by path.
func (ps *Problems) AddErr(path string, err error) {
	if err == nil {
		return
	}
	var sub Problems
	if errors.As(err, &sub) {
		for _, p := range sub {
			p.Path = JoinPath(path, p.Path)
			*ps = append(*ps, p)
		}
		return
	}
	*ps = append(*ps, Problem{Path: path, Msg: err.Error()})
}

// Err returns ps as an error, or nil when it is empty.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Error lists every problem, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// JoinPath joins two key paths: JoinPath("relay", "listeners[1]") is
// "relay.listeners[1]" and JoinPath("relay.listeners", "[1]") is "relay.listeners[1]".
func JoinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}

// Index returns the path of element i of the list at path.
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
