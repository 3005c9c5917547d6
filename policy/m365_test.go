package policy

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func readSample(t testing.TB) []byte {
	t.Helper()
	// A sample in the shape of the endpoint web service's answer: values
	// from the published worldwide list (some lists shortened) and one
	// synthetic entry; every entry says so in its notes.
	data, err := os.ReadFile("testdata/m365-endpoints-sample.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestImportM365Sample(t *testing.T) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f, rep, err := ImportM365(readSample(t), M365Options{Version: "2026081400", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// Only set 11 is media: sets 1 (Exchange) and 31 (SharePoint) are
	// Optimize with UDP 443 only, 12 is Allow, 9001 is Default.
	if !slices.Equal(f.EndpointSets, []int{11}) {
		t.Errorf("selected sets %v, want [11]; report %+v", f.EndpointSets, rep)
	}
	if want := []string{"52.112.0.0/14", "52.122.0.0/15", "2603:1063::/38"}; !slices.Equal(f.Prefixes, want) {
		t.Errorf("prefixes %v, want %v", f.Prefixes, want)
	}
	if !slices.Equal(f.UDPPorts, []string{"3478-3481"}) {
		t.Errorf("ports %v", f.UDPPorts)
	}
	for _, id := range []string{"1 (Exchange)", "31 (SharePoint)"} {
		if !slices.ContainsFunc(rep.Skipped, func(s string) bool { return strings.HasPrefix(s, id) && strings.Contains(s, "not media") }) {
			t.Errorf("report does not say why set %s was skipped: %v", id, rep.Skipped)
		}
	}
	if f.Source != M365Source || f.Version != "2026081400" || !f.Generated.Equal(now) || len(f.InputSHA256) != 64 {
		t.Errorf("provenance: %+v", f)
	}
	// The file the importer writes is what the daemon reads.
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseMediaFile(data)
	if err != nil {
		t.Fatalf("re-reading the written file: %v\n%s", err, data)
	}
	if !slices.Equal(back.prefixes, f.prefixes) || !slices.Equal(back.udpPorts, f.udpPorts) {
		t.Errorf("round trip: %v %v, want %v %v", back.prefixes, back.udpPorts, f.prefixes, f.udpPorts)
	}
	// A media file with the Teams set overlaps the teams preset.
	cfg := DefaultConfig()
	if _, err := assembleMedia(&cfg, back); !errors.Is(err, ErrOverlap) {
		t.Errorf("file + teams preset: err = %v, want ErrOverlap", err)
	}
	cfg.Media.Presets = nil
	set, err := assembleMedia(&cfg, back)
	if err != nil || len(set.Prefixes) != 3 {
		t.Errorf("file alone: %v, %v", set.Prefixes, err)
	}
}

func TestImportM365Bad(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "  ", "empty document"},
		{"not JSON", "<html>", "expected a JSON array"},
		{"service error", `{"error": "Rate limit exceeded"}`, `answered with an error: "Rate limit exceeded"`},
		{"truncated", `[{"id": 11, "category": "Optimize"`, "ends in the middle"},
		{"syntax error with position", "[\n {\"id\": 11,\n  \"ips\": [52.112.0.0/14]}]", "line 3 column 17: invalid character '.'"},
		{"wrong type", `[{"id": 11, "udpPorts": 3478}]`, "line 1 column 28"},
		{"trailing data", `[] []`, "trailing data"},
		{"no media set", `[{"id": 1, "category": "Optimize", "udpPorts": "443", "ips": ["13.107.6.152/31"]}]`, "no endpoint set is category Optimize with UDP ports in 3478-3481"},
		{"bad prefix in a media set", `[{"id": 11, "category": "Optimize", "udpPorts": "3478", "ips": ["52.112.0.1/14"]}]`, "set 11 (entry 0): ips[0]: \"52.112.0.1/14\" has host bits set"},
		{"bad ports", `[{"id": 11, "category": "Optimize", "udpPorts": "3478-", "ips": ["52.112.0.0/14"]}]`, "set 11 (entry 0): udpPorts"},
		{"default route", `[{"id": 11, "category": "Optimize", "udpPorts": "3478", "ips": ["0.0.0.0/0"]}]`, "cannot be a media prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ImportM365([]byte(tt.in), M365Options{})
			if !errors.Is(err, ErrEndpoints) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrEndpoints mentioning %q", err, tt.want)
			}
		})
	}
}

func TestImportM365NestedPrefixes(t *testing.T) {
	in := `[{"id": 11, "category": "Optimize", "udpPorts": "3478,3479", "ips": ["52.112.0.0/14", "52.113.0.0/16", "52.112.0.0/14"]},
	        {"id": 99, "category": "optimize", "udpPorts": "3480-3481,50000", "ips": ["2603:1063::/38"]}]`
	f, _, err := ImportM365([]byte(in), M365Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"52.112.0.0/14", "2603:1063::/38"}; !slices.Equal(f.Prefixes, want) {
		t.Errorf("prefixes %v, want %v", f.Prefixes, want)
	}
	if want := []string{"3478-3481", "50000"}; !slices.Equal(f.UDPPorts, want) {
		t.Errorf("ports %v, want %v", f.UDPPorts, want)
	}
}

func TestParseMediaFileBad(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"malformed", `{"format": "mediaedge-media-v1",`, "ends in the middle"},
		{"unknown field", `{"format": "mediaedge-media-v1", "prefixes": ["192.0.2.0/24"], "udp_ports": [], "extra": 1}`, `unknown field "extra"`},
		{"wrong format", `{"format": "v0", "prefixes": ["192.0.2.0/24"]}`, `format "v0"`},
		{"no prefixes", `{"format": "mediaedge-media-v1", "prefixes": []}`, "no prefixes"},
		{"duplicate", `{"format": "mediaedge-media-v1", "prefixes": ["192.0.2.0/24", "192.0.2.0/24"]}`, "listed twice"},
		{"host bits", `{"format": "mediaedge-media-v1", "prefixes": ["192.0.2.1/24"]}`, "prefixes[0]: \"192.0.2.1/24\" has host bits set"},
		{"mapped", `{"format": "mediaedge-media-v1", "prefixes": ["::ffff:192.0.2.0/120"]}`, "cannot be a media prefix"},
		{"bad port", `{"format": "mediaedge-media-v1", "prefixes": ["192.0.2.0/24"], "udp_ports": ["0"]}`, "udp_ports[0]: port 0 out of range"},
		{"trailing", `{"format": "mediaedge-media-v1", "prefixes": ["192.0.2.0/24"]} {}`, "trailing data"},
		{"too large", `{"format": "` + strings.Repeat("x", maxMediaFile) + `"}`, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMediaFile([]byte(tt.in))
			if !errors.Is(err, ErrMediaFile) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrMediaFile mentioning %q", err, tt.want)
			}
		})
	}
}

// FuzzImportM365 feeds arbitrary documents to the importer: it must never
// panic, and whatever it accepts must write a media file that the daemon
// reads back identically and that passes the overlap check.
func FuzzImportM365(f *testing.F) {
	f.Add(readSample(f))
	f.Add([]byte(`[{"id": 11, "category": "Optimize", "udpPorts": "3478-3481", "ips": ["52.112.0.0/14", "2603:1063::/38"]}]`))
	f.Add([]byte(`{"error": "x"}`))
	f.Add([]byte(`[{"id": 1, "category": "Optimize", "udpPorts": "3478,443", "ips": ["10.0.0.0/8", "10.1.0.0/16"]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mf, _, err := ImportM365(data, M365Options{Now: time.Unix(0, 0)})
		if err != nil {
			if !errors.Is(err, ErrEndpoints) {
				t.Fatalf("error without ErrEndpoints: %v", err)
			}
			return
		}
		out, err := mf.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseMediaFile(out)
		if err != nil {
			t.Fatalf("written file does not parse: %v\n%s", err, out)
		}
		if !slices.Equal(back.prefixes, mf.prefixes) || !slices.Equal(back.udpPorts, mf.udpPorts) {
			t.Fatalf("round trip changed the set")
		}
		cfg := DefaultConfig()
		cfg.Media.Presets, cfg.CorporatePrefixes = nil, nil
		if _, err := assembleMedia(&cfg, back); err != nil {
			t.Fatalf("imported set overlaps itself: %v", err)
		}
	})
}

// FuzzParseMediaFile feeds arbitrary bytes to the media file parser.
func FuzzParseMediaFile(f *testing.F) {
	f.Add([]byte(`{"format": "mediaedge-media-v1", "source": "x", "prefixes": ["192.0.2.0/24", "2001:db8::/32"], "udp_ports": ["3478-3481"]}`))
	f.Add([]byte(`{"format": "mediaedge-media-v1", "prefixes": ["192.0.2.0/24",]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mf, err := ParseMediaFile(data)
		if err != nil {
			if !errors.Is(err, ErrMediaFile) {
				t.Fatalf("error without ErrMediaFile: %v", err)
			}
			return
		}
		out, err := mf.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseMediaFile(out); err != nil {
			t.Fatalf("re-marshalled file does not parse: %v", err)
		}
	})
}

// TestImportM365ValueErrorsHaveLineColumn: an endpoint set that is valid
// JSON but not a valid media set is reported with the line and column of
// the offending value, like a syntax error.
func TestImportM365ValueErrorsHaveLineColumn(t *testing.T) {
	in := `[
  {"id": 4, "category": "Allow", "udpPorts": "x", "ips": ["bad"]},
  {"id": 11, "category": "Optimize", "udpPorts": "3478",
   "ips": ["52.112.0.0/14",
           "52.113.0.1/16"]},
  {"id": 12, "category": "Optimize",
   "udpPorts": "3478-", "ips": ["52.112.0.0/14"]}
]`
	_, _, err := ImportM365([]byte(in), M365Options{})
	if !errors.Is(err, ErrEndpoints) || !strings.Contains(err.Error(), "line 5 column 12: set 11 (entry 1): ips[1]") {
		t.Errorf("bad prefix: %v", err)
	}
	in = strings.Replace(in, "52.113.0.1/16", "52.113.0.0/16", 1)
	_, _, err = ImportM365([]byte(in), M365Options{})
	if !errors.Is(err, ErrEndpoints) || !strings.Contains(err.Error(), "line 7 column 16: set 12 (entry 2): udpPorts") {
		t.Errorf("bad ports: %v", err)
	}
}
