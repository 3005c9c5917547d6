package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// MediaFileFormat identifies the media file format in its "format" field.
const MediaFileFormat = "mediaedge-media-v1"

// maxMediaFile bounds what the daemon reads: the whole Microsoft 365
// Optimize set is a few hundred bytes; a few MiB is generous.
const maxMediaFile = 4 << 20

// MediaFile is a media set written by `mediaedge policy import-m365` and
// read by the daemon (media.file). It records where the set came from so
// that an operator can tell which list is routed. A MediaFile is a value:
// safe to share once parsed, never modified.
type MediaFile struct {
	Format string `json:"format"`
	// Source is the document the set was imported from (a URL or a path).
	Source string `json:"source"`
	// Version is the publisher's version of that document, when known
	// (Microsoft's is YYYYMMDDNN).
	Version string `json:"version,omitempty"`
	// Generated is when the file was written.
	Generated time.Time `json:"generated"`
	// InputSHA256 is the hash of the imported document.
	InputSHA256 string `json:"input_sha256,omitempty"`
	// EndpointSets are the ids of the selected Microsoft endpoint sets.
	EndpointSets []int `json:"endpoint_sets,omitempty"`
	// Prefixes are the media prefixes, IPv4 and IPv6 mixed.
	Prefixes []string `json:"prefixes"`
	// UDPPorts are the media ports ("3478-3481").
	UDPPorts []string `json:"udp_ports"`

	prefixes []netip.Prefix
	udpPorts []config.PortRange
}

// describe names the file for status and logs.
func (f *MediaFile) describe() string {
	s := "media.file from " + f.Source
	if f.Version != "" {
		s += " version " + f.Version
	}
	return s + " generated " + f.Generated.UTC().Format(time.RFC3339)
}

// Marshal returns the file's JSON, indented, with a final newline.
func (f *MediaFile) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("policy: encoding media file: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseMediaFile decodes and checks a media file: known fields only,
// valid prefixes without host bits, valid port ranges, no duplicates. Every
// error wraps ErrMediaFile and says where the problem is.
func ParseMediaFile(data []byte) (*MediaFile, error) {
	if len(data) > maxMediaFile {
		return nil, fmt.Errorf("%w: %d bytes is larger than %d", ErrMediaFile, len(data), maxMediaFile)
	}
	var f MediaFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMediaFile, jsonErrorAt(data, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrMediaFile)
	}
	if f.Format != MediaFileFormat {
		return nil, fmt.Errorf("%w: format %q is not %q (write it with `mediaedge policy import-m365`)", ErrMediaFile, f.Format, MediaFileFormat)
	}
	if len(f.Prefixes) == 0 {
		return nil, fmt.Errorf("%w: no prefixes", ErrMediaFile)
	}
	seen := map[netip.Prefix]bool{}
	for i, s := range f.Prefixes {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%w: prefixes[%d]: %w", ErrMediaFile, i, err)
		}
		if p.Addr().Is4In6() || p.Addr().Zone() != "" || p.Bits() == 0 {
			return nil, fmt.Errorf("%w: prefixes[%d]: %s cannot be a media prefix", ErrMediaFile, i, p)
		}
		if seen[p] {
			return nil, fmt.Errorf("%w: prefixes[%d]: %s is listed twice", ErrMediaFile, i, p)
		}
		seen[p] = true
		f.prefixes = append(f.prefixes, p)
	}
	for i, s := range f.UDPPorts {
		r, err := config.ParsePortRange(s)
		if err != nil {
			return nil, fmt.Errorf("%w: udp_ports[%d]: %w", ErrMediaFile, i, err)
		}
		f.udpPorts = append(f.udpPorts, r)
	}
	return &f, nil
}

// LoadMediaFile reads and parses the media file at path.
func LoadMediaFile(path string) (*MediaFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMediaFile, err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxMediaFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrMediaFile, path, err)
	}
	f, err := ParseMediaFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// jsonErrorAt turns a decoding error into a message with the line and
// column of the offending byte.
func jsonErrorAt(data []byte, err error) string {
	var (
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
		off int64 = -1
	)
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	case errors.Is(err, io.EOF):
		return "empty document"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "document ends in the middle of a value"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	// Both offsets count the bytes read when the error was found: the
	// offending byte is the last of them.
	off--
	if off < 0 || off >= int64(len(data)) {
		return msg
	}
	line, col := lineColumn(data, off)
	return fmt.Sprintf("line %d column %d: %s", line, col, msg)
}

// lineColumn returns the 1-based line and column of byte offset off.
func lineColumn(data []byte, off int64) (line, col int) {
	line, col = 1, 1
	for _, c := range data[:min(off, int64(len(data)))] {
		if c == '\n' {
			line, col = line+1, 1
			continue
		}
		col++
	}
	return line, col
}
