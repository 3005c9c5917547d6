package policy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/internal/config"
)

// M365Source is the Microsoft 365 endpoint web service for the worldwide
// instance; `mediaedge policy import-m365` records it as the default source.
const M365Source = "https://endpoints.office.com/endpoints/Worldwide"

// maxEndpoints bounds the endpoints document (the full worldwide list is
// about 100 KiB).
const maxEndpoints = 16 << 20

// mediaPorts are the Teams media ports (3478 STUN, 3479 audio, 3480 video,
// 3481 screen sharing). An Optimize set is media only if it lists one of
// them: the Exchange and SharePoint Optimize sets carry UDP 443 and are not
// media.
var mediaPorts = config.PortRange{Min: 3478, Max: 3481}

// m365Endpoint is one endpoint set of the web service. Empty fields are
// omitted by the service; unknown fields are ignored so that a new field
// does not break the import.
type m365Endpoint struct {
	ID          int      `json:"id"`
	ServiceArea string   `json:"serviceArea"`
	DisplayName string   `json:"serviceAreaDisplayName"`
	IPs         []string `json:"ips"`
	TCPPorts    string   `json:"tcpPorts"`
	UDPPorts    string   `json:"udpPorts"`
	Category    string   `json:"category"`
	Required    bool     `json:"required"`
}

// M365Options describe the imported document.
type M365Options struct {
	// Source is recorded in the media file (default M365Source).
	Source string
	// Version is the web service's version of the list, when known.
	Version string
	// Now is the generation time (default time.Now).
	Now time.Time
}

// M365Report says which endpoint sets were selected and why others were
// not.
type M365Report struct {
	// Selected are "id (area): n prefixes, udp ports".
	Selected []string
	// Skipped are the Optimize sets left out, with the reason.
	Skipped []string
}

// ImportM365 selects the media endpoint sets of a Microsoft 365 endpoints
// document (the JSON of the endpoint web service): category Optimize and
// UDP ports within 3478-3481. It returns the media file to write and a
// report. A malformed document fails with ErrEndpoints and the line and
// column of the problem.
func ImportM365(data []byte, opts M365Options) (*MediaFile, M365Report, error) {
	var rep M365Report
	if len(data) > maxEndpoints {
		return nil, rep, fmt.Errorf("%w: %d bytes is larger than %d", ErrEndpoints, len(data), maxEndpoints)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, rep, fmt.Errorf("%w: empty document", ErrEndpoints)
	}
	if trimmed[0] != '[' {
		var e struct {
			Error string `json:"error"`
		}
		if trimmed[0] == '{' && json.Unmarshal(trimmed, &e) == nil && e.Error != "" {
			return nil, rep, fmt.Errorf("%w: the web service answered with an error: %q", ErrEndpoints, e.Error)
		}
		return nil, rep, fmt.Errorf("%w: expected a JSON array of endpoint sets", ErrEndpoints)
	}
	sets, spans, err := decodeM365(data)
	if err != nil {
		return nil, rep, err
	}
	// at names where value v of entry i is written, for errors about
	// values that are valid JSON but not valid endpoints.
	at := func(i int, v string) string {
		q, _ := json.Marshal(v)
		off := spans[i][0]
		if k := bytes.Index(data[spans[i][0]:spans[i][1]], q); k >= 0 {
			off += int64(k)
		}
		line, col := lineColumn(data, off)
		return fmt.Sprintf("line %d column %d", line, col)
	}

	var (
		ids      []int
		pfxs     []netip.Prefix
		udpPorts []config.PortRange
	)
	for i, s := range sets {
		if !strings.EqualFold(s.Category, "Optimize") {
			continue
		}
		where := fmt.Sprintf("set %d (entry %d)", s.ID, i)
		ports, err := parseM365Ports(s.UDPPorts)
		if err != nil {
			return nil, rep, fmt.Errorf("%w: %s: %s: udpPorts: %w", ErrEndpoints, at(i, s.UDPPorts), where, err)
		}
		if !slices.ContainsFunc(ports, func(r config.PortRange) bool {
			return r.Min <= mediaPorts.Max && r.Max >= mediaPorts.Min
		}) {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%d (%s): Optimize but no UDP %s, not media", s.ID, s.ServiceArea, mediaPorts))
			continue
		}
		if len(s.IPs) == 0 {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%d (%s): no IP ranges", s.ID, s.ServiceArea))
			continue
		}
		for j, ip := range s.IPs {
			p, err := config.ParsePrefix(ip)
			if err != nil {
				return nil, rep, fmt.Errorf("%w: %s: %s: ips[%d]: %w", ErrEndpoints, at(i, ip), where, j, err)
			}
			if p.Bits() == 0 || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				return nil, rep, fmt.Errorf("%w: %s: %s: ips[%d]: %s cannot be a media prefix", ErrEndpoints, at(i, ip), where, j, p)
			}
			pfxs = append(pfxs, p)
		}
		udpPorts = append(udpPorts, ports...)
		ids = append(ids, s.ID)
		rep.Selected = append(rep.Selected, fmt.Sprintf("%d (%s): %d prefixes, UDP %s", s.ID, s.ServiceArea, len(s.IPs), s.UDPPorts))
	}
	if len(ids) == 0 {
		return nil, rep, fmt.Errorf("%w: no endpoint set is category Optimize with UDP ports in %s (is this the endpoints list of the web service?)", ErrEndpoints, mediaPorts)
	}
	pfxs = outermost(pfxs)
	f := &MediaFile{
		Format:       MediaFileFormat,
		Source:       cmp.Or(opts.Source, M365Source),
		Version:      opts.Version,
		Generated:    opts.Now,
		EndpointSets: ids,
	}
	if f.Generated.IsZero() {
		f.Generated = time.Now().UTC().Truncate(time.Second)
	}
	sum := sha256.Sum256(data)
	f.InputSHA256 = hex.EncodeToString(sum[:])
	for _, p := range pfxs {
		f.Prefixes = append(f.Prefixes, p.String())
		f.prefixes = append(f.prefixes, p)
	}
	for _, r := range mergePorts(udpPorts) {
		f.UDPPorts = append(f.UDPPorts, r.String())
		f.udpPorts = append(f.udpPorts, r)
	}
	return f, rep, nil
}

// decodeM365 decodes the array of endpoint sets and returns, for each, the
// byte range it was read from.
func decodeM365(data []byte) ([]m365Endpoint, [][2]int64, error) {
	var sets []m365Endpoint
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&sets); err != nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrEndpoints, jsonErrorAt(data, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%w: trailing data after the array", ErrEndpoints)
	}
	// A second pass over the document, known valid, for where each set is.
	spans := make([][2]int64, 0, len(sets))
	dec = json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrEndpoints, jsonErrorAt(data, err))
	}
	for dec.More() {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("%w: %s", ErrEndpoints, jsonErrorAt(data, err))
		}
		spans = append(spans, [2]int64{start, dec.InputOffset()})
	}
	if len(spans) != len(sets) {
		return nil, nil, fmt.Errorf("%w: %d endpoint sets on the second reading, %d on the first", ErrEndpoints, len(spans), len(sets))
	}
	return sets, spans, nil
}

// parseM365Ports parses the service's port lists: "3478,3479,3480,3481",
// "3478-3481,50000". Empty means none.
func parseM365Ports(s string) ([]config.PortRange, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []config.PortRange
	for _, f := range strings.Split(s, ",") {
		r, err := config.ParsePortRange(f)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// outermost sorts ps and drops duplicates and prefixes nested in another
// one (a set listing a block and a part of it routes the same as the block
// alone, and the overlap check would refuse the pair).
func outermost(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, comparePrefix)
	var out []netip.Prefix
	for _, p := range ps {
		// In this order a nested prefix follows its container, and anything
		// between them is nested too.
		if n := len(out); n > 0 && out[n-1].Contains(p.Addr()) && out[n-1].Bits() <= p.Bits() {
			continue
		}
		out = append(out, p)
	}
	return out
}
