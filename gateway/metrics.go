package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// workerStats are one worker's packet counters. The worker adds to them
// with atomics; a scrape sums every worker's. No per-session labels.
type workerStats struct {
	packets [2][2]atomic.Uint64 // [leg][in, out]
	bytes   [2][2]atomic.Uint64
	drops   [2][numReasons]atomic.Uint64
	wakeups atomic.Uint64
	batches atomic.Uint64 // receive system calls that returned data
	trials  atomic.Uint64
	denied  atomic.Uint64 // sources denied trials (trial.go)
	latched [2]atomic.Uint64
	// UDP GSO: messages sent with UDP_SEGMENT, the datagrams they
	// carried, and whether the kernel refused it.
	gsoSends, gsoSegments atomic.Uint64
	gsoOff                atomic.Bool
	// datagrams sent through the raw socket (rawsend_linux.go)
	rawSends atomic.Uint64
	// datagrams read from the worker's steering targets (steering.go)
	steered atomic.Uint64
}

func (s *workerStats) in(l legID, n int) {
	s.packets[l][0].Add(1)
	s.bytes[l][0].Add(uint64(n))
}

func (s *workerStats) out(l legID, n int) {
	s.packets[l][1].Add(1)
	s.bytes[l][1].Add(uint64(n))
}

func (s *workerStats) drop(l legID, r reason) { s.drops[l][r].Add(1) }

// metrics are the gateway's Prometheus metrics: mediaedge_gateway_*.
type metrics struct {
	sessions prometheus.Gauge
	created  prometheus.Counter
	ended    *prometheus.CounterVec
	rekeys   *prometheus.CounterVec
	refused  *prometheus.CounterVec
	// dtlsHandshakes counts DTLS handshakes by result (dtlstransport.go).
	dtlsHandshakes *prometheus.CounterVec

	// steering: the steering program runs (steering.go)
	steering atomic.Bool

	mu      sync.Mutex
	workers []*workerStats
	mode    [2]string

	packetsDesc, bytesDesc, dropsDesc, wakeupsDesc, batchesDesc, trialsDesc, latchedDesc, modeDesc *prometheus.Desc
	gsoDesc, gsoSegDesc, sendModeDesc, deniedDesc, rawDesc, steeredDesc, steeringDesc              *prometheus.Desc
}

// newUnregisteredMetrics returns metrics nobody scrapes (no registry).
func newUnregisteredMetrics() *metrics {
	m, _ := newMetrics(prometheus.NewRegistry())
	return m
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediaedge_gateway_sessions",
			Help: "Sessions currently open.",
		}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_gateway_sessions_created_total",
			Help: "Sessions created.",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_gateway_sessions_ended_total",
			Help: "Sessions ended, by reason (deleted, idle_timeout, shutdown).",
		}, []string{"reason"}),
		rekeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_gateway_rekeys_total",
			Help: "New outbound keys generated, by leg and trigger (api, schedule, packets, lifetime).",
		}, []string{"leg", "trigger"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_gateway_session_requests_refused_total",
			Help: "Session requests refused, by reason (invalid, limit, ports, draining).",
		}, []string{"reason"}),
		dtlsHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_gateway_dtls_handshakes_total",
			Help: "DTLS-SRTP handshakes of DTLS legs, by result (ok, fingerprint_mismatch, no_use_srtp, profile_not_allowed, timeout, limit, error).",
		}, []string{"result"}),
		packetsDesc: prometheus.NewDesc("mediaedge_gateway_packets_total",
			"Packets (SRTP and SRTCP) authenticated from a leg's peer (direction in) or sent to it (out).",
			[]string{"leg", "direction"}, nil),
		bytesDesc: prometheus.NewDesc("mediaedge_gateway_bytes_total",
			"Bytes of the packets counted in mediaedge_gateway_packets_total.",
			[]string{"leg", "direction"}, nil),
		dropsDesc: prometheus.NewDesc("mediaedge_gateway_dropped_packets_total",
			"Packets dropped, by leg and reason.", []string{"leg", "reason"}, nil),
		wakeupsDesc: prometheus.NewDesc("mediaedge_gateway_wakeups_total",
			"Event-loop wake-ups (epoll_wait returns).", nil, nil),
		batchesDesc: prometheus.NewDesc("mediaedge_gateway_receive_calls_total",
			"recvmmsg calls that returned packets; packets_total / this is the mean batch.", nil, nil),
		trialsDesc: prometheus.NewDesc("mediaedge_gateway_trial_authentications_total",
			"Packets of unknown flows on shared ports tried against session keys.", nil, nil),
		deniedDesc: prometheus.NewDesc("mediaedge_gateway_trial_denied_sources_total",
			"Times a source address was denied trial authentication for a while because none of its recent packets of unknown flows authenticated (shared ports); its packets are dropped as junk_source.", nil, nil),
		latchedDesc: prometheus.NewDesc("mediaedge_gateway_latched_total",
			"Remote addresses learned from authenticated packets.", []string{"leg"}, nil),
		modeDesc: prometheus.NewDesc("mediaedge_gateway_port_mode_info",
			"Port mode of each leg (dedicated or shared); always 1.", []string{"leg", "mode"}, nil),
		gsoDesc: prometheus.NewDesc("mediaedge_gateway_gso_sends_total",
			"sendmmsg messages that carried several packets to one destination with UDP GSO.", nil, nil),
		gsoSegDesc: prometheus.NewDesc("mediaedge_gateway_gso_segments_total",
			"Packets sent inside UDP GSO messages.", nil, nil),
		rawDesc: prometheus.NewDesc("mediaedge_gateway_raw_sent_packets_total",
			"Packets sent through a raw socket, many sockets' packets per sendmmsg, instead of one system call each from their own socket (dedicated ports).", nil, nil),
		steeredDesc: prometheus.NewDesc("mediaedge_gateway_steered_packets_total",
			"Datagrams to dedicated ports that the sk_lookup program steered to a worker's target socket, read in batches (gateway.steering).", nil, nil),
		steeringDesc: prometheus.NewDesc("mediaedge_gateway_steering_active",
			"1 when datagrams to dedicated ports are steered to one socket per worker (gateway.steering), 0 when each dedicated socket is read on its own.", nil, nil),
		sendModeDesc: prometheus.NewDesc("mediaedge_gateway_send_mode_info",
			"Send mode: gso (UDP_SEGMENT batches per destination) or mmsg (one datagram per message, after the kernel refused GSO); always 1.",
			[]string{"mode"}, nil),
	}
	for _, c := range []prometheus.Collector{m.sessions, m.created, m.ended, m.rekeys, m.refused, m.dtlsHandshakes, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range dtlsResults {
		m.dtlsHandshakes.WithLabelValues(r)
	}
	return m, nil
}

// Describe implements prometheus.Collector for the per-worker counters.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.packetsDesc, m.bytesDesc, m.dropsDesc, m.wakeupsDesc,
		m.batchesDesc, m.trialsDesc, m.latchedDesc, m.modeDesc, m.gsoDesc, m.gsoSegDesc, m.sendModeDesc, m.deniedDesc, m.rawDesc,
		m.steeredDesc, m.steeringDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	ws := m.workers
	mode := m.mode
	m.mu.Unlock()
	dirs := [2]string{"in", "out"}
	var wake, batches, trials, denied uint64
	for l := legInternal; l <= legCloud; l++ {
		var latched uint64
		var drops [numReasons]uint64
		for d := 0; d < 2; d++ {
			var p, b uint64
			for _, w := range ws {
				p += w.packets[l][d].Load()
				b += w.bytes[l][d].Load()
			}
			ch <- prometheus.MustNewConstMetric(m.packetsDesc, prometheus.CounterValue, float64(p), l.String(), dirs[d])
			ch <- prometheus.MustNewConstMetric(m.bytesDesc, prometheus.CounterValue, float64(b), l.String(), dirs[d])
		}
		for _, w := range ws {
			for r := range drops {
				drops[r] += w.drops[l][r].Load()
			}
			latched += w.latched[l].Load()
		}
		for r, v := range drops {
			ch <- prometheus.MustNewConstMetric(m.dropsDesc, prometheus.CounterValue, float64(v), l.String(), reason(r).String())
		}
		ch <- prometheus.MustNewConstMetric(m.latchedDesc, prometheus.CounterValue, float64(latched), l.String())
		if mode[l] != "" {
			ch <- prometheus.MustNewConstMetric(m.modeDesc, prometheus.GaugeValue, 1, l.String(), mode[l])
		}
	}
	var gso, seg, raw, steered uint64
	sendMode := "gso"
	for _, w := range ws {
		wake += w.wakeups.Load()
		batches += w.batches.Load()
		trials += w.trials.Load()
		denied += w.denied.Load()
		gso += w.gsoSends.Load()
		seg += w.gsoSegments.Load()
		raw += w.rawSends.Load()
		steered += w.steered.Load()
		if w.gsoOff.Load() {
			sendMode = "mmsg"
		}
	}
	ch <- prometheus.MustNewConstMetric(m.gsoDesc, prometheus.CounterValue, float64(gso))
	ch <- prometheus.MustNewConstMetric(m.gsoSegDesc, prometheus.CounterValue, float64(seg))
	ch <- prometheus.MustNewConstMetric(m.rawDesc, prometheus.CounterValue, float64(raw))
	ch <- prometheus.MustNewConstMetric(m.steeredDesc, prometheus.CounterValue, float64(steered))
	active := 0.0
	if m.steering.Load() {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(m.steeringDesc, prometheus.GaugeValue, active)
	if len(ws) > 0 {
		ch <- prometheus.MustNewConstMetric(m.sendModeDesc, prometheus.GaugeValue, 1, sendMode)
	}
	ch <- prometheus.MustNewConstMetric(m.wakeupsDesc, prometheus.CounterValue, float64(wake))
	ch <- prometheus.MustNewConstMetric(m.batchesDesc, prometheus.CounterValue, float64(batches))
	ch <- prometheus.MustNewConstMetric(m.trialsDesc, prometheus.CounterValue, float64(trials))
	ch <- prometheus.MustNewConstMetric(m.deniedDesc, prometheus.CounterValue, float64(denied))
}

// setWorkers publishes the running workers' stats (nil when stopped; the
// counters then stay at their last values through keep).
func (m *metrics) setWorkers(ws []*workerStats, mode [2]string) {
	m.mu.Lock()
	m.workers = ws
	m.mode = mode
	m.mu.Unlock()
}
