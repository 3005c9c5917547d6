// Package config decodes mediaedge's YAML configuration strictly and reports
// every problem with its key path and line.
//
// The package is generic: it knows nothing about the sections. The daemon
// owns the top-level struct, made of each component's own Config; Decode
// fills it from YAML over its defaults, refusing unknown keys and values of
// the wrong type, then calls Validate on every value that has one and loads
// every SecretFile.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator is implemented by configuration values that check themselves.
// Validate returns nil, a plain error (reported at the value's own path) or
// Problems with paths relative to the value. Decode calls it on every value
// of the tree that implements it, parents after children.
type Validator interface {
	Validate() error
}

// Options tunes Decode.
type Options struct {
	// Dir is the directory of the configuration file, for relative secret
	// paths. Empty means the current directory.
	Dir string
	// SkipSecrets leaves SecretFile fields unread (for printing or diffing
	// a configuration without access to its secrets).
	SkipSecrets bool
}

// Decode parses data into dst, a pointer to a struct already holding the
// defaults. It returns Problems listing everything wrong, each with its key
// path and line, or nil.
func Decode(data []byte, dst any, opts Options) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return errors.New("config: Decode needs a pointer to a struct")
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			// An empty file means "all defaults".
			return check(rv, nil, opts).Err()
		}
		return Problems{syntaxProblem(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Problems{{Line: extra.Line, Msg: "more than one YAML document in the file"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	lines := map[string]int{}
	var ps Problems
	if !(root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
		walk(root, rv.Elem().Type(), "", lines, &ps)
		// Decode even when walk found problems: the fields that did decode
		// are then validated too, so one run reports everything. walk
		// turned the values it refused into nulls, so they keep their
		// defaults and yaml.v3 does not stop at them (an Unmarshaler's
		// error ends its decoding, leaving the rest of a list item zero).
		if err := root.Decode(dst); err != nil && len(ps) == 0 {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				ps = append(ps, syntaxProblem(err))
			}
		}
	}
	// A value walk refused kept its default, which validation may then
	// call missing ("addr: required"): one mistake, one problem.
	reported := map[string]bool{}
	for _, p := range ps {
		reported[p.Path] = true
	}
	for _, p := range check(rv, lines, opts) {
		if !reported[p.Path] || p.Path == "" {
			ps = append(ps, p)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps.Err()
}

// check validates and loads secrets, attaching lines to problems.
func check(rv reflect.Value, lines map[string]int, opts Options) Problems {
	var ps Problems
	visit(rv.Elem(), "", &ps, opts)
	for i := range ps {
		ps[i].Line = lineOf(lines, ps[i].Path)
	}
	return ps
}

// lineOf returns the line of path or of its nearest ancestor in the file.
func lineOf(lines map[string]int, path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := lines[p]; ok {
			return l
		}
	}
	return 0
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	validatorType   = reflect.TypeFor[Validator]()
	secretType      = reflect.TypeFor[SecretFile]()
)

// walk checks node against t without decoding it: unknown keys, wrong
// shapes and scalars that do not fit their type become problems. It records
// the line of every path it sees.
func walk(n *yaml.Node, t reflect.Type, path string, lines map[string]int, ps *Problems) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if _, seen := lines[path]; !seen && path != "" {
		lines[path] = n.Line
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: cleanYAMLError(err)})
			refuse(n)
		}
		return
	}
	if n.Tag == "!!null" {
		return // "key:" with no value keeps the default
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf("want a mapping of keys, got %s", describe(n))})
			return
		}
		fields := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if duplicateKey(n, i, path, ps) {
				continue
			}
			f, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", k.Value)
				if s := suggest(k.Value, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				*ps = append(*ps, Problem{Path: path, Line: k.Line, Msg: msg})
				continue
			}
			p := JoinPath(path, k.Value)
			lines[p] = k.Line
			walk(v, f.Type, p, lines, ps)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf("want a list, got %s", describe(n))})
			return
		}
		if t.Kind() == reflect.Array && len(n.Content) > t.Len() {
			*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf("at most %d items", t.Len())})
		}
		for i, item := range n.Content {
			walk(item, t.Elem(), Index(path, i), lines, ps)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf("want a mapping, got %s", describe(n))})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if duplicateKey(n, i, path, ps) {
				continue
			}
			if err := k.Decode(reflect.New(t.Key()).Interface()); err != nil {
				*ps = append(*ps, Problem{Path: path, Line: k.Line, Msg: "bad key: " + cleanYAMLError(err)})
				continue
			}
			walk(v, t.Elem(), JoinPath(path, k.Value), lines, ps)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf("want %s, got %s", typeName(t), describe(n))})
			return
		}
		if t.Kind() == reflect.String && n.Tag != "!!str" {
			// yaml.v3 would quietly turn `name: 0x10` or `name: yes` into a
			// string; a strict file spells strings as strings only when
			// they could be read as something else.
			if n.Tag == "!!bool" || n.Tag == "!!int" || n.Tag == "!!float" {
				*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf("want a string, got %s %s (quote it)", tagName(n.Tag), n.Value)})
			}
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			*ps = append(*ps, Problem{Path: path, Line: n.Line, Msg: scalarMessage(n, t)})
			refuse(n)
		}
	}
}

// refuse turns a value walk reported into a null, which yaml.v3 decodes as
// "keep the default" instead of failing on it again.
func refuse(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// duplicateKey reports whether the key at index i of mapping n repeats an
// earlier key, recording the problem: YAML forbids it and a silent "last one
// wins" hides mistakes.
func duplicateKey(n *yaml.Node, i int, path string, ps *Problems) bool {
	k := n.Content[i]
	for j := 0; j < i; j += 2 {
		if prev := n.Content[j]; prev.Value == k.Value {
			*ps = append(*ps, Problem{Path: path, Line: k.Line, Msg: fmt.Sprintf("key %q repeated (first at line %d)", k.Value, prev.Line)})
			return true
		}
	}
	return false
}

// visit calls Validate on every Validator in the tree and loads secrets.
func visit(v reflect.Value, path string, ps *Problems, opts Options) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return
		}
		visit(v.Elem(), path, ps, opts)
		return
	case reflect.Struct:
		if v.Type() == secretType {
			if !opts.SkipSecrets && v.CanAddr() {
				s := v.Addr().Interface().(*SecretFile)
				if err := s.Load(opts.Dir); err != nil {
					ps.AddErr(path, err)
				}
			}
			return
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, inline := yamlName(f)
			p := path
			if !inline {
				p = JoinPath(path, name)
			}
			visit(v.Field(i), p, ps, opts)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			visit(v.Index(i), Index(path, i), ps, opts)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			// Map values are not addressable: validate a copy.
			c := reflect.New(iter.Value().Type()).Elem()
			c.Set(iter.Value())
			visit(c, JoinPath(path, fmt.Sprint(iter.Key().Interface())), ps, opts)
			v.SetMapIndex(iter.Key(), c)
		}
	}
	if v.CanAddr() && v.Addr().Type().Implements(validatorType) {
		ps.AddErr(path, v.Addr().Interface().(Validator).Validate())
	} else if v.Type().Implements(validatorType) {
		ps.AddErr(path, v.Interface().(Validator).Validate())
	}
}

type fieldInfo struct{ Type reflect.Type }

// structFields maps YAML key names to fields, flattening ",inline" structs.
func structFields(t reflect.Type) map[string]fieldInfo {
	m := map[string]fieldInfo{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, inline := yamlName(f)
		if name == "-" {
			continue
		}
		if inline {
			for k, v := range structFields(f.Type) {
				m[k] = v
			}
			continue
		}
		m[name] = fieldInfo{Type: f.Type}
	}
	return m
}

func yamlName(f reflect.StructField) (name string, inline bool) {
	tag := f.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	if strings.Contains(","+opts+",", ",inline,") {
		return "", true
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, false
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%s %q", tagName(n.Tag), n.Value)
	}
	return kindName(n)
}

func tagName(tag string) string {
	switch tag {
	case "!!str":
		return "string"
	case "!!int":
		return "integer"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return strings.TrimPrefix(tag, "!!")
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// scalarMessage explains why scalar n does not fit t, naming ranges for
// integers that overflow.
func scalarMessage(n *yaml.Node, t reflect.Type) string {
	if n.Tag == "!!int" {
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			switch t.Kind() {
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				if v < 0 {
					return fmt.Sprintf("%s must not be negative", n.Value)
				}
				return fmt.Sprintf("%s out of range (at most %d)", n.Value, uint64(1)<<(t.Bits())-1)
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				return fmt.Sprintf("%s out of range (%d to %d)", n.Value, -(int64(1) << (t.Bits() - 1)), int64(1)<<(t.Bits()-1)-1)
			}
		}
	}
	return fmt.Sprintf("want %s, got %s", typeName(t), describe(n))
}

var yamlLineRE = regexp.MustCompile(`^(yaml: )?(line \d+: )?`)

// cleanYAMLError strips yaml.v3's prefixes: the path and line are reported
// separately.
func cleanYAMLError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return yamlLineRE.ReplaceAllString(te.Errors[0], "")
	}
	return yamlLineRE.ReplaceAllString(err.Error(), "")
}

var syntaxLineRE = regexp.MustCompile(`line (\d+)`)

// syntaxProblem reports a YAML parse error. yaml.v3 reports the line of
// the parser's context for some errors (often the line before the fault),
// so the line goes into the message as "near line N" rather than into
// Problem.Line.
func syntaxProblem(err error) Problem {
	msg := err.Error()
	rest := yamlLineRE.ReplaceAllString(msg, "")
	if m := syntaxLineRE.FindStringSubmatch(msg); m != nil {
		return Problem{Msg: fmt.Sprintf("YAML syntax error near line %s: %s", m[1], rest)}
	}
	return Problem{Msg: "YAML syntax error: " + rest}
}

// suggest returns the known key closest to k when it is close enough to be
// a typo.
func suggest(k string, fields map[string]fieldInfo) string {
	best, bestD := "", 3
	for name := range fields {
		if d := EditDistance(k, name); d < bestD || (d == bestD && name < best && best != "") {
			best, bestD = name, d
		}
	}
	if bestD > 2 || bestD >= len(k) {
		return ""
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b: what the
// did-you-mean suggestions of the configuration and the CLI rank by.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
