package load

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// SpecFile is the fixed-key description of a system under test that has no
// session API (rtpengine driven over ng, a plain forwarder, a gateway set up
// by a script): the same JSON contract as the shared srtpload harness, so
// one file drives either tool.
//
//	{"pid": 1234, "streams": [{"name": "call0:a2b",
//	  "tx_suite": "AES_CM_128_HMAC_SHA1_80", "tx_key": "<base64>",
//	  "rx_suite": "AES_CM_128_HMAC_SHA1_32", "rx_key": "<base64>",
//	  "src": "127.0.0.1:31000", "target": "127.0.0.1:20030", "recv": "127.0.0.1:31100",
//	  "rtcp_src": "...", "rtcp_target": "...", "rtcp_recv": "..."}]}
type SpecFile struct {
	Peer    string       `json:"peer,omitempty"`
	PID     int          `json:"pid,omitempty"`
	Streams []SpecStream `json:"streams"`
}

// SpecStream is one stream of a SpecFile. Suite applies to both keys when
// TxSuite or RxSuite is empty.
type SpecStream struct {
	Name       string `json:"name"`
	Suite      string `json:"suite,omitempty"`
	TxSuite    string `json:"tx_suite,omitempty"`
	RxSuite    string `json:"rx_suite,omitempty"`
	TxKey      string `json:"tx_key"`
	RxKey      string `json:"rx_key"`
	Src        string `json:"src,omitempty"`
	Target     string `json:"target"`
	Recv       string `json:"recv"`
	RTCPSrc    string `json:"rtcp_src,omitempty"`
	RTCPTarget string `json:"rtcp_target,omitempty"`
	RTCPRecv   string `json:"rtcp_recv,omitempty"`
}

// LoadSpec reads a spec file.
func LoadSpec(path string) (*SpecFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load: opening spec: %w", err)
	}
	defer f.Close()
	return readSpec(f)
}

// readSpec decodes a spec. Unknown keys are ignored: harness scripts add
// their own.
func readSpec(r io.Reader) (*SpecFile, error) {
	var s SpecFile
	if err := json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("load: decoding spec: %w", err)
	}
	if len(s.Streams) == 0 {
		return nil, fmt.Errorf("%w: spec lists no streams", ErrBadOptions)
	}
	return &s, nil
}

// Flows turns the spec into flows. A stream named "call:dir" belongs to
// direction "dir"; an unnamed one to "forward".
func (s *SpecFile) Flows() ([]Flow, error) {
	var out []Flow
	for i, st := range s.Streams {
		where := fmt.Sprintf("spec stream %d (%s)", i, st.Name)
		ts, rs := firstNonEmpty(st.TxSuite, st.Suite, "AES_CM_128_HMAC_SHA1_80"), firstNonEmpty(st.RxSuite, st.Suite, "AES_CM_128_HMAC_SHA1_80")
		tx, err := srtpcheck.ParseKey(ts, st.TxKey)
		if err != nil {
			return nil, fmt.Errorf("%s tx_key: %w", where, err)
		}
		rx, err := srtpcheck.ParseKey(rs, st.RxKey)
		if err != nil {
			return nil, fmt.Errorf("%s rx_key: %w", where, err)
		}
		f := Flow{Direction: "forward", TxKey: tx, RxKey: rx, Src: st.Src, Recv: st.Recv, RTCPSrc: st.RTCPSrc, RTCPRecv: st.RTCPRecv}
		if _, d, ok := strings.Cut(st.Name, ":"); ok && d != "" {
			f.Direction = d
		}
		if f.Target, err = netip.ParseAddrPort(st.Target); err != nil {
			return nil, fmt.Errorf("%s target: %w", where, err)
		}
		if st.RTCPTarget != "" {
			if f.RTCPTarget, err = netip.ParseAddrPort(st.RTCPTarget); err != nil {
				return nil, fmt.Errorf("%s rtcp_target: %w", where, err)
			}
		}
		if f.Recv == "" {
			return nil, fmt.Errorf("%w: %s has no recv address", ErrBadOptions, where)
		}
		out = append(out, f)
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
