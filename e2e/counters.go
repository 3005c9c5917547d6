package e2e

import (
	"encoding/json"
	"fmt"
)

// LinkCounters are an interface's packet and byte counters, as the kernel
// keeps them (`ip -s link`).
type LinkCounters struct {
	TxPackets, TxBytes, RxPackets, RxBytes uint64
}

// Sub returns c minus an earlier reading.
func (c LinkCounters) Sub(earlier LinkCounters) LinkCounters {
	return LinkCounters{
		TxPackets: c.TxPackets - earlier.TxPackets, TxBytes: c.TxBytes - earlier.TxBytes,
		RxPackets: c.RxPackets - earlier.RxPackets, RxBytes: c.RxBytes - earlier.RxBytes,
	}
}

// parseLinkJSON decodes `ip -s -j link show` and returns the counters by
// interface name; each of ifaces must be present.
func parseLinkJSON(b []byte, ifaces ...string) (map[string]LinkCounters, error) {
	var links []struct {
		IfName  string `json:"ifname"`
		Stats64 struct {
			RX struct{ Bytes, Packets uint64 } `json:"rx"`
			TX struct{ Bytes, Packets uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(b, &links); err != nil {
		return nil, fmt.Errorf("e2e: decoding `ip -s -j link`: %w", err)
	}
	res := map[string]LinkCounters{}
	for _, l := range links {
		res[l.IfName] = LinkCounters{
			TxPackets: l.Stats64.TX.Packets, TxBytes: l.Stats64.TX.Bytes,
			RxPackets: l.Stats64.RX.Packets, RxBytes: l.Stats64.RX.Bytes,
		}
	}
	for _, name := range ifaces {
		if _, ok := res[name]; !ok {
			return nil, fmt.Errorf("e2e: no interface %s in `ip -s -j link`", name)
		}
	}
	return res, nil
}
