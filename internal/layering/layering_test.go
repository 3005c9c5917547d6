package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mediaedge/mediaedge"

// pkg is the part of `go list -json` the rules read.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// allImports returns what p and its tests import, without duplicates.
func (p pkg) allImports() []string {
	all := slices.Concat(p.Imports, p.TestImports, p.XTestImports)
	slices.Sort(all)
	return slices.Compact(all)
}

// rel returns path relative to the module, or "" when it is outside it.
func rel(path string) string {
	if path == module {
		return "."
	}
	r, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return r
}

// under reports whether the module-relative path r is dir or below it.
func under(r, dir string) bool { return r == dir || strings.HasPrefix(r, dir+"/") }

// floor names the floor of a module-relative package path: "internal",
// one of the components, "daemon", "bench", "soak", or "" for the rest (cmd,
// e2e).
func floor(r string) string {
	for _, f := range []string{"internal", "relay", "gateway", "policy", "daemon", "bench", "soak"} {
		if under(r, f) {
			return f
		}
	}
	return ""
}

var components = []string{"relay", "gateway", "policy"}

// forbidden lists, per floor, the floors it must not import.
var forbidden = map[string][]string{
	"internal": {"relay", "gateway", "policy", "daemon", "bench", "soak"},
	"relay":    {"gateway", "policy", "daemon", "bench", "soak"},
	"gateway":  {"relay", "policy", "daemon", "bench", "soak"},
	"policy":   {"relay", "gateway", "daemon", "bench", "soak"},
	// The bench and the soak talk to the daemon over the wire, like any
	// client.
	"bench": {"relay", "gateway", "policy", "daemon", "soak"},
	"soak":  {"relay", "gateway", "policy", "daemon"},
}

// loopPkgs returns the shared event loop packages the workers must both
// import: every package under internal/ named for the loop (internal/evloop),
// or internal/udpbatch while there is none.
func loopPkgs(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		r := rel(p.ImportPath)
		if under(r, "internal") && strings.Contains(r[strings.LastIndexByte(r, '/')+1:], "loop") {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		out = []string{"internal/udpbatch"}
	}
	return out
}

// violations returns every broken rule, one line each.
func violations(pkgs []pkg) []string {
	var out []string
	imports := map[string][]string{} // relay and gateway -> what their code imports
	for _, p := range pkgs {
		from := rel(p.ImportPath)
		ff := floor(from)
		for _, imp := range p.allImports() {
			to := rel(imp)
			if to == "" {
				continue
			}
			if slices.Contains(forbidden[ff], floor(to)) {
				out = append(out, from+" imports "+to+": "+ff+" must not import "+floor(to))
			}
			if (from == "relay" || from == "gateway") && slices.Contains(p.Imports, imp) {
				imports[from] = append(imports[from], to)
			}
		}
	}
	// The workers share one event loop instead of each typing its own
	// (STYLE.md 31): both import it.
	for _, l := range loopPkgs(pkgs) {
		for _, c := range []string{"relay", "gateway"} {
			if !slices.Contains(imports[c], l) {
				out = append(out, c+" does not import "+l+": relay and gateway must share the event loop")
			}
		}
	}
	return out
}

// listModule runs `go list -json ./...` at the module root.
func listModule(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestLayering(t *testing.T) {
	pkgs := listModule(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[rel(p.ImportPath)] = true
	}
	// A go list that found nothing would pass every rule.
	for _, must := range append([]string{"internal/udpbatch", "daemon", "bench"}, components...) {
		if !seen[must] {
			t.Fatalf("go list did not list %s: is the test running in the module?", must)
		}
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestViolationsCatches feeds the rules a house with every arrow wrong:
// each must be reported, so TestLayering can fail.
func TestViolationsCatches(t *testing.T) {
	m := func(r string) string { return module + "/" + r }
	bad := []pkg{
		{ImportPath: m("internal/config"), Imports: []string{m("daemon")}},
		{ImportPath: m("internal/control"), TestImports: []string{m("relay")}},
		{ImportPath: m("relay"), Imports: []string{m("gateway"), m("internal/udpbatch")}},
		{ImportPath: m("gateway"), XTestImports: []string{m("bench/load")}},
		{ImportPath: m("policy"), Imports: []string{m("daemon"), "github.com/vishvananda/netlink"}},
		{ImportPath: m("bench/sut"), Imports: []string{m("gateway")}},
		{ImportPath: m("daemon"), Imports: []string{m("relay"), m("gateway"), m("policy")}},
	}
	got := violations(bad)
	for _, want := range []string{
		"internal/config imports daemon",
		"internal/control imports relay",
		"relay imports gateway",
		"gateway imports bench/load",
		"policy imports daemon",
		"bench/sut imports gateway",
		"gateway does not import internal/udpbatch",
	} {
		if !slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, want) }) {
			t.Errorf("not reported: %s\ngot:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 7 {
		t.Errorf("%d violations, want 7 (the daemon may import components):\n%s", len(got), strings.Join(got, "\n"))
	}
	// Once a loop package exists, both workers must import it.
	withLoop := []pkg{
		{ImportPath: m("internal/evloop")},
		{ImportPath: m("relay"), Imports: []string{m("internal/evloop"), m("internal/udpbatch")}},
		{ImportPath: m("gateway"), Imports: []string{m("internal/udpbatch")}, TestImports: []string{m("internal/evloop")}},
	}
	if v := violations(withLoop); len(v) != 1 || !strings.HasPrefix(v[0], "gateway does not import internal/evloop") {
		t.Errorf("a gateway with its own loop reported:\n%s", strings.Join(v, "\n"))
	}
	good := []pkg{
		{ImportPath: m("relay"), Imports: []string{m("internal/udpbatch")}},
		{ImportPath: m("gateway"), Imports: []string{m("internal/udpbatch"), m("internal/control")}},
		{ImportPath: m("daemon"), Imports: []string{m("relay"), m("gateway")}},
		{ImportPath: m("cmd/mediaedge"), Imports: []string{m("daemon"), m("bench")}},
	}
	if v := violations(good); len(v) != 0 {
		t.Errorf("a sound house reported:\n%s", strings.Join(v, "\n"))
	}
}
