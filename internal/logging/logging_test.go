package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestJournalPrefixes(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	log := New(&buf, Config{Level: "debug", Format: "text"}, lv, true).With("component", "relay")
	log.Debug("d")
	log.Info("i", "k", "v")
	log.Warn("w")
	log.Error("e")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"<7>", "<6>", "<4>", "<3>"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, want[i]) {
			t.Errorf("line %d = %q, want prefix %s", i, l, want[i])
		}
		if strings.Contains(l, "time=") {
			t.Errorf("line %d carries a timestamp; the journal adds its own: %q", i, l)
		}
		if !strings.Contains(l, "component=relay") {
			t.Errorf("line %d lost the component attribute: %q", i, l)
		}
	}
}

func TestLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	log := New(&buf, Config{Level: "warn", Format: "json"}, lv, false)
	log.Info("hidden")
	log.Warn("shown", "n", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %v: %s", err, buf.String())
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" {
		t.Errorf("record = %v", rec)
	}
	buf.Reset()
	lv.Set(slog.LevelInfo) // a reload lowers the level
	log.Info("now shown")
	if !strings.Contains(buf.String(), "now shown") {
		t.Error("level change through the LevelVar not applied")
	}
}

func TestValidate(t *testing.T) {
	c := Config{Level: "loud", Format: "xml"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "level: \"loud\"") || !strings.Contains(err.Error(), "format: \"xml\"") {
		t.Fatalf("Validate = %v", err)
	}
	d := DefaultConfig()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestStderrIsJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	if StderrIsJournal() {
		t.Error("journal detected without JOURNAL_STREAM")
	}
	t.Setenv("JOURNAL_STREAM", "1:2")
	if StderrIsJournal() {
		t.Error("journal detected for a stream that is not stderr")
	}
}
