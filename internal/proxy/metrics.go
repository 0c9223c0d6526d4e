package proxy

import "github.com/prometheus/client_golang/prometheus"

// The outcome label of junction_proxy_requests_total.
const (
	outcomeOK        = "ok"        // the backend answered a result (or allowed)
	outcomeRefused   = "refused"   // the backend answered an error, sent to the client
	outcomeTimeout   = "timeout"   // no answer within the backend's timeout: unavailable
	outcomeFailed    = "failed"    // connect error, 5xx or 429: unavailable or rate_limited
	outcomeBreaker   = "breaker"   // the circuit breaker was open: unavailable at once
	outcomeBusy      = "busy"      // the concurrency limit and queue were full: unavailable at once
	outcomeInvalid   = "invalid"   // an answer that breaks the contract (docs/proxy.md): internal
	outcomeTooLarge  = "too_large" // an answer over max_response_bytes: internal
	outcomeCancelled = "cancelled" // the client went away first
)

var outcomes = []string{outcomeOK, outcomeRefused, outcomeTimeout, outcomeFailed, outcomeBreaker, outcomeBusy, outcomeInvalid, outcomeTooLarge, outcomeCancelled}

var kinds = []string{KindMethod, KindConnect, KindSubscribe, KindPublish}

// metrics are the proxy's collectors, labelled by backend name (the
// operator's, a bounded set), request kind and outcome.
type metrics struct {
	requests *prometheus.CounterVec   // backend, kind, outcome
	seconds  *prometheus.HistogramVec // backend, kind
	inflight *prometheus.GaugeVec     // backend
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_proxy_requests_total",
			Help: "Requests forwarded to backends by backend, kind (method, connect, subscribe, publish) and outcome (ok, refused, timeout, failed, breaker, busy, invalid, too_large, cancelled).",
		}, []string{"backend", "kind", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "junction_proxy_request_seconds",
			Help:    "Time from sending a request to a backend to its answer read (or failure).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"backend", "kind"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "junction_proxy_inflight",
			Help: "Requests being sent to a backend now.",
		}, []string{"backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.seconds, m.inflight)
	}
	return m
}

// declare exports a backend's series at zero.
func (m *metrics) declare(backend string) {
	for _, k := range kinds {
		for _, o := range outcomes {
			m.requests.WithLabelValues(backend, k, o)
		}
	}
	m.inflight.WithLabelValues(backend)
}

func (m *metrics) outcome(backend, kind, outcome string) {
	m.requests.WithLabelValues(backend, kind, outcome).Inc()
}
