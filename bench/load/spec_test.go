package load

import (
	"strings"
	"testing"
)

func TestSpecFlows(t *testing.T) {
	spec := `{"pid": 42, "peer": "fwd", "streams": [
	 {"name": "call0:a2b", "tx_suite": "AES_CM_128_HMAC_SHA1_80", "tx_key": "` + strings.Repeat("A", 40) + `",
	  "rx_suite": "AES_CM_128_HMAC_SHA1_32", "rx_key": "` + strings.Repeat("B", 40) + `",
	  "src": "127.0.0.1:31000", "target": "127.0.0.1:20030", "recv": "127.0.0.1:31100",
	  "rtcp_target": "127.0.0.1:20031", "extra": true}]}`
	s, err := readSpec(strings.NewReader(spec))
	if err != nil {
		t.Fatal(err)
	}
	fl, err := s.Flows()
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != 42 || len(fl) != 1 || fl[0].Direction != "a2b" || fl[0].RxKey.Suite.TagLen != 4 || fl[0].RTCPTarget.Port() != 20031 {
		t.Fatalf("spec read as %+v %+v", s, fl)
	}
	for _, bad := range []string{
		`{"streams": []}`,
		`{"streams": [{"tx_key": "AAAA", "rx_key": "AAAA", "target": "127.0.0.1:1", "recv": "127.0.0.1:2"}]}`,
		`{"streams": [{"tx_key": "` + strings.Repeat("A", 40) + `", "rx_key": "` + strings.Repeat("A", 40) + `", "target": "nowhere", "recv": "127.0.0.1:2"}]}`,
		`not json`,
	} {
		s, err := readSpec(strings.NewReader(bad))
		if err == nil {
			_, err = s.Flows()
		}
		if err == nil {
			t.Errorf("spec %s accepted", bad)
		}
	}
}
