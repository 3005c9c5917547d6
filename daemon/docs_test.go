package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestDocsConfigKeysExist: every configuration key path the README and
// docs/ name (relay.listeners[1], policy.mark, ...) is a key of the
// configuration, so that a renamed key cannot leave the docs behind.
func TestDocsConfigKeysExist(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	re := regexp.MustCompile(`\b(?:log|metrics|control|relay|gateway|policy)(?:\.[a-z_0-9]+(?:\[[0-9]+\])?)+`)
	found := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, path := range re.FindAllString(line, -1) {
				switch filepath.Ext(path) {
				case ".md", ".sock", ".go", ".yaml":
					continue // a file name, not a key
				}
				found++
				if !keyExists(reflect.TypeFor[Config](), path) {
					t.Errorf("%s:%d: %s is not a configuration key", strings.TrimPrefix(f, "../"), i+1, path)
				}
			}
		}
	}
	if found == 0 {
		t.Fatal("no key paths found in the docs: is the pattern broken?")
	}
}

// keyExists resolves a dotted key path with [n] indexes against t's yaml
// tags.
func keyExists(t reflect.Type, path string) bool {
	for _, part := range strings.Split(path, ".") {
		name, _, indexed := strings.Cut(part, "[")
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return false
		}
		var next reflect.Type
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == name {
				next = f.Type
				break
			}
		}
		if next == nil {
			return false
		}
		if indexed {
			if next.Kind() != reflect.Slice && next.Kind() != reflect.Array {
				return false
			}
			next = next.Elem()
		}
		t = next
	}
	return true
}
