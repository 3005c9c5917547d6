package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// ngMetrics are the ng listener's metrics: mediaedge_gateway_ng_*.
type ngMetrics struct {
	requests *prometheus.CounterVec
	drops    *prometheus.CounterVec
	calls    prometheus.Gauge
}

// ngCommands are the command label values; anything else counts as
// "unknown", so the label cannot grow with what clients send.
var ngCommands = map[string]bool{
	"ping": true, "offer": true, "answer": true, "delete": true,
	"query": true, "list": true, "statistics": true, "retransmission": true,
}

func newNGMetrics(reg prometheus.Registerer) (*ngMetrics, error) {
	m := &ngMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_gateway_ng_requests_total",
			Help: "ng requests answered, by command and result (ok, error; retransmissions answered from the reply cache count as result retransmission).",
		}, []string{"command", "result"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_gateway_ng_dropped_total",
			Help: "ng datagrams dropped unanswered, by reason (refused_source, rate_limited, too_large, no_cookie; over TCP also bad_frame and too_many_connections, which close or refuse the connection).",
		}, []string{"reason"}),
		calls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediaedge_gateway_ng_calls",
			Help: "ng calls currently known (offered or answered).",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.drops, m.calls} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: registering ng metrics: %w", err)
		}
	}
	return m, nil
}

func (m *ngMetrics) request(cmd, result string) {
	if !ngCommands[cmd] {
		cmd = "unknown"
	}
	m.requests.WithLabelValues(cmd, result).Inc()
}
