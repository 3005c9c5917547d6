package policy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the policy component's Prometheus series. Labels are
// bounded: family (ipv4, ipv6), op (add, delete), trigger (a fixed set).
type metrics struct {
	rulesOwned    prometheus.Gauge
	routesOwned   prometheus.Gauge
	repairs       prometheus.Counter
	changes       *prometheus.CounterVec
	uplinkUp      *prometheus.GaugeVec
	lastReconcile prometheus.Gauge
	reconciles    *prometheus.CounterVec
	errors        prometheus.Counter
	conntrack     prometheus.Counter
	foreignRules  prometheus.Gauge
	mediaPrefixes *prometheus.GaugeVec
}

// Reconcile triggers, the values of the trigger label.
const (
	triggerStart    = "start"
	triggerEvent    = "event"
	triggerPeriodic = "periodic"
	triggerRetry    = "retry"
	triggerReload   = "reload"
	triggerAPI      = "api"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rulesOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediaedge_policy_rules_owned",
			Help: "Policy routing rules in mediaedge's protocol, as last read from the kernel.",
		}),
		routesOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediaedge_policy_routes_owned",
			Help: "Routes in mediaedge's protocol, as last read from the kernel.",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_policy_drift_repairs_total",
			Help: "Reconcile passes that changed the kernel although the desired state had not changed: someone or something else had altered mediaedge's rules or routes.",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_policy_changes_total",
			Help: "Rules and routes added (or replaced) and deleted by mediaedge.",
		}, []string{"op"}),
		uplinkUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mediaedge_policy_uplink_up",
			Help: "1 when the uplink can carry media for the family (link up, carrier, address, gateway), 0 otherwise.",
		}, []string{"family"}),
		lastReconcile: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediaedge_policy_last_reconcile_timestamp_seconds",
			Help: "Unix time of the last reconcile pass that completed without error.",
		}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mediaedge_policy_reconciles_total",
			Help: "Reconcile passes by trigger (start, event, periodic, retry, reload, api).",
		}, []string{"trigger"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_policy_errors_total",
			Help: "Reconcile passes that ended with an error (kernel refused a change, or reading the kernel failed).",
		}),
		conntrack: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mediaedge_policy_conntrack_flushed_total",
			Help: "Conntrack entries of media flows deleted because their path changed.",
		}),
		foreignRules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mediaedge_policy_foreign_rules",
			Help: "Rules of other software that shadow mediaedge's rules or sit in its priority range.",
		}),
		mediaPrefixes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mediaedge_policy_media_prefixes",
			Help: "Media prefixes in the assembled media set.",
		}, []string{"family"}),
	}
	if reg != nil {
		var err error
		for _, c := range []*prometheus.Gauge{&m.rulesOwned, &m.routesOwned, &m.lastReconcile, &m.foreignRules} {
			if *c, err = register(reg, *c); err != nil {
				return nil, err
			}
		}
		for _, c := range []*prometheus.Counter{&m.repairs, &m.errors, &m.conntrack} {
			if *c, err = register(reg, *c); err != nil {
				return nil, err
			}
		}
		for _, c := range []**prometheus.CounterVec{&m.changes, &m.reconciles} {
			if *c, err = register(reg, *c); err != nil {
				return nil, err
			}
		}
		for _, c := range []**prometheus.GaugeVec{&m.uplinkUp, &m.mediaPrefixes} {
			if *c, err = register(reg, *c); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range []string{triggerStart, triggerEvent, triggerPeriodic, triggerRetry, triggerReload, triggerAPI} {
		m.reconciles.WithLabelValues(t)
	}
	for _, op := range []string{"add", "delete"} {
		m.changes.WithLabelValues(op)
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same name (a second Manager on one registry, as in tests).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}
