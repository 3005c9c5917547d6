package relay

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop causes: the bounded label values of mediaedge_relay_drops_total.
const (
	dropNoAllocation = iota // data from a client with no allocation
	dropNoChannel           // ChannelData on an unbound channel
	dropNoPermission        // peer datagram without permission
	dropBandwidth           // over a bandwidth cap
	dropClientDenied        // source not in allowed_clients
	dropPeerDenied          // peer refused by the policy after a reload
	dropOversize            // datagram larger than the relay's buffers
	dropSendError           // the kernel refused the send
	dropQueueFull           // the slow path's queue was full
	dropMalformed           // not STUN, not ChannelData
	numDrops
)

var dropNames = [numDrops]string{
	"no_allocation", "no_channel", "no_permission", "bandwidth", "client_denied",
	"peer_denied", "oversize", "send_error", "queue_full", "malformed",
}

// Directions of relayed traffic.
const (
	dirToPeer = iota
	dirToClient
	numDirs
)

var dirNames = [numDirs]string{"to_peer", "to_client"}

// dataStats are the data path's counters: plain atomics that the packet
// loops add to once per batch, read by the collector at scrape time.
type dataStats struct {
	packets [numDirs]atomic.Uint64
	bytes   [numDirs]atomic.Uint64
	drops   [numDrops]atomic.Uint64
	// batches count reads, for the average batch size.
	batches [numDirs]atomic.Uint64
	// wakeups counts worker rounds (a wake-up or a coalesced round).
	wakeups atomic.Uint64
	// gsoSegs counts datagrams sent as segments of UDP GSO messages.
	gsoSegs atomic.Uint64
	// throttled is the time TCP peer connections waited for a bandwidth
	// cap, in nanoseconds.
	throttled atomic.Uint64
}

// metrics are the relay's Prometheus metrics. Labels are bounded: transport,
// reason, cause and direction come from fixed lists, never from users or
// addresses.
type metrics struct {
	active   *prometheus.GaugeVec   // transport
	created  *prometheus.CounterVec // transport
	refused  *prometheus.CounterVec // reason
	authFail *prometheus.CounterVec // reason
	denied   *prometheus.CounterVec // reason
	buffers  *prometheus.GaugeVec   // socket, direction
	ioMode   *prometheus.GaugeVec   // mode
	duration prometheus.Histogram
	stats    *dataStats

	// client TCP/TLS connections
	acceptErrors prometheus.Counter
	tcpRefused   *prometheus.CounterVec // reason
	tcpUnauth    prometheus.Counter
	// unauthenticated requests (401) answered and dropped
	challenges        prometheus.Counter
	challengesLimited prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, st *dataStats) (*metrics, error) {
	m := &metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mediaedge_relay_allocations_active",
			Help: "Live TURN allocations by client transport (udp, tcp, tls) and relay protocol (udp, tcp).",
		}, []string{"transport", "relay"}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_relay_allocations_created_total",
			Help: "TURN allocations created, by client transport and relay protocol.",
		}, []string{"transport", "relay"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_relay_allocations_refused_total",
			Help: "Allocate requests refused after authentication, by reason (quota_user, quota_total, ports_exhausted, client_denied, draining, other).",
		}, []string{"reason"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_relay_auth_failures_total",
			Help: "Authentication failures by reason (unknown_user, bad_integrity, expired, wrong_realm, no_secret).",
		}, []string{"reason"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_relay_peers_denied_total",
			Help: "Peer addresses refused by the peer policy (403), by reason.",
		}, []string{"reason"}),
		buffers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mediaedge_relay_socket_buffer_bytes",
			Help: "Socket buffer sizes granted by the kernel, by socket kind (listener, relay) and direction (recv, send).",
		}, []string{"socket", "direction"}),
		ioMode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mediaedge_relay_io_mode",
			Help: "1 for the active UDP I/O mode of the data path (mmsg: recvmmsg/sendmmsg; gso: sendmmsg with UDP GSO for runs of datagrams to one destination).",
		}, []string{"mode"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mediaedge_relay_allocation_duration_seconds",
			Help:    "Lifetime of ended allocations.",
			Buckets: []float64{1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600},
		}),
		stats: st,
		acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_relay_tcp_accept_errors_total",
			Help: "Temporary accept errors (out of file descriptors or buffers) of the TCP/TLS client listeners and the TCP relay listeners (RFC 6062), each waited out with a backoff of up to 1 s.",
		}),
		tcpRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_relay_tcp_connections_refused_total",
			Help: "Client TCP/TLS connections closed at accept by a cap, by reason (total_cap: limits.max_tcp_connections; source_cap: limits.max_tcp_connections_per_source).",
		}, []string{"reason"}),
		tcpUnauth: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_relay_tcp_unauthenticated_closed_total",
			Help: "Client TCP/TLS connections closed because no request on them authenticated within limits.tcp_auth_timeout.",
		}),
		challenges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_relay_unauthenticated_requests_total",
			Help: "Requests without credentials answered with 401 Unauthorized (the challenge carrying realm and nonce).",
		}),
		challengesLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_relay_unauthenticated_requests_dropped_total",
			Help: "Requests without credentials dropped unanswered because their source exceeded limits.challenges_per_source.",
		}),
	}
	for _, c := range []prometheus.Collector{m.active, m.created, m.refused, m.authFail, m.denied, m.buffers, m.ioMode, m.duration, (*statsCollector)(m),
		m.acceptErrors, m.tcpRefused, m.tcpUnauth, m.challenges, m.challengesLimited} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Make the common series visible at zero before the first event.
	for _, r := range []string{"quota_user", "quota_total", "ports_exhausted", "client_denied", "draining"} {
		m.refused.WithLabelValues(r)
	}
	for _, r := range []string{tcpRefusedTotal, tcpRefusedSource} {
		m.tcpRefused.WithLabelValues(r)
	}
	for _, r := range []string{authUnknownUser, authBadIntegrity, authExpired, authWrongRealm} {
		m.authFail.WithLabelValues(r)
	}
	return m, nil
}

var (
	descPackets = prometheus.NewDesc("mediaedge_relay_packets_total",
		"Datagrams relayed, by direction (to_peer, to_client).", []string{"direction"}, nil)
	descBytes = prometheus.NewDesc("mediaedge_relay_bytes_total",
		"Payload bytes relayed, by direction (to_peer, to_client).", []string{"direction"}, nil)
	descDrops = prometheus.NewDesc("mediaedge_relay_drops_total",
		"Datagrams dropped by the relay, by cause.", []string{"cause"}, nil)
	descRounds = prometheus.NewDesc("mediaedge_relay_worker_rounds_total",
		"Rounds of the data path workers: each is a wake-up or a coalesced round that serves every socket with data; packets_total / worker_rounds_total is the datagrams served per round.", nil, nil)
	descThrottled = prometheus.NewDesc("mediaedge_relay_tcp_throttled_seconds_total",
		"Time TCP peer connections (RFC 6062) were held back by a bandwidth cap: TCP cannot drop, so excess bytes wait.", nil, nil)
	descGSO = prometheus.NewDesc("mediaedge_relay_gso_datagrams_total",
		"Relayed datagrams sent as segments of UDP GSO messages (runs of equal-size datagrams to one destination sent in one pass through the stack).", nil, nil)
	descBatches = prometheus.NewDesc("mediaedge_relay_read_batches_total",
		"Batched reads (one recvmmsg each) on the data path, by direction of the data read; packets_total / read_batches_total is the average batch.", []string{"direction"}, nil)
)

// statsCollector exposes dataStats without touching the packet path.
type statsCollector metrics

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPackets
	ch <- descBytes
	ch <- descDrops
	ch <- descBatches
	ch <- descRounds
	ch <- descThrottled
	ch <- descGSO
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats
	for d := 0; d < numDirs; d++ {
		ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(st.packets[d].Load()), dirNames[d])
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(st.bytes[d].Load()), dirNames[d])
		ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(st.batches[d].Load()), dirNames[d])
	}
	ch <- prometheus.MustNewConstMetric(descRounds, prometheus.CounterValue, float64(st.wakeups.Load()))
	ch <- prometheus.MustNewConstMetric(descGSO, prometheus.CounterValue, float64(st.gsoSegs.Load()))
	ch <- prometheus.MustNewConstMetric(descThrottled, prometheus.CounterValue, float64(st.throttled.Load())/1e9)
	for i := 0; i < numDrops; i++ {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(st.drops[i].Load()), dropNames[i])
	}
}

// noRegistry accepts and forgets metrics, for a Server built without a
// registry.
type noRegistry struct{}

func (noRegistry) Register(prometheus.Collector) error  { return nil }
func (noRegistry) MustRegister(...prometheus.Collector) {}
func (noRegistry) Unregister(prometheus.Collector) bool { return true }
