package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is how a whole delivery ended.
type Outcome string

// Outcomes, the values of the outcome label.
const (
	OutcomeDelivered Outcome = "delivered" // a 2xx
	OutcomeRejected  Outcome = "rejected"  // a status not retried (4xx other than 429, 3xx)
	OutcomeExhausted Outcome = "exhausted" // retryable failures until the budget or the attempt limit ran out
	OutcomeRefused   Outcome = "refused"   // the address guard refused the target
	OutcomeBreaker   Outcome = "breaker"   // the circuit breaker was open
	OutcomeCancelled Outcome = "cancelled" // the caller's context ended
)

var outcomes = []Outcome{OutcomeDelivered, OutcomeRejected, OutcomeExhausted, OutcomeRefused, OutcomeBreaker, OutcomeCancelled}

// metrics are the delivery collectors, labelled by the Deliverer's purpose
// ("webhook", later "proxy") and low-cardinality values only: never a
// target or a URL.
type metrics struct {
	deliveries *prometheus.CounterVec   // outcome
	attempts   *prometheus.CounterVec   // stage, class (2xx, 4xx, 429, 5xx, or the stage)
	latency    *prometheus.HistogramVec // stage
	breakers   *prometheus.CounterVec   // to
}

func newMetrics(reg prometheus.Registerer, purpose string) *metrics {
	labels := prometheus.Labels{"purpose": purpose}
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_delivery_total", ConstLabels: labels,
			Help: "Outbound deliveries (signed webhooks) by outcome: delivered, rejected, exhausted, refused, breaker, cancelled.",
		}, []string{"outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_delivery_attempts_total", ConstLabels: labels,
			Help: "Outbound delivery attempts by stage and result (status class for responses).",
		}, []string{"stage", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "junction_delivery_attempt_seconds", ConstLabels: labels,
			Help:    "Time from request to response headers (or failure) of an outbound delivery attempt.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"stage"}),
		breakers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_delivery_breaker_transitions_total", ConstLabels: labels,
			Help: "Circuit breaker transitions of delivery targets, by the state entered.",
		}, []string{"to"}),
	}
	// Every outcome and state is exported from the start, at zero.
	for _, o := range outcomes {
		m.deliveries.WithLabelValues(string(o))
	}
	for _, s := range []BreakerState{Closed, Open, HalfOpen} {
		m.breakers.WithLabelValues(s.String())
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.attempts, m.latency, m.breakers)
	}
	return m
}

func (m *metrics) delivery(o Outcome) { m.deliveries.WithLabelValues(string(o)).Inc() }

func (m *metrics) attempt(a Attempt) {
	result := string(a.Stage)
	if a.Stage == StageResponse {
		switch {
		case a.Status == 429:
			result = "429"
		case a.Status >= 200 && a.Status < 600:
			result = []string{"2xx", "3xx", "4xx", "5xx"}[a.Status/100-2]
		default:
			result = "other"
		}
	}
	m.attempts.WithLabelValues(string(a.Stage), result).Inc()
	if a.Stage != StageGuard && a.Stage != StageBreaker {
		m.latency.WithLabelValues(string(a.Stage)).Observe(a.Latency.Seconds())
	}
}

func (m *metrics) breaker(to BreakerState) { m.breakers.WithLabelValues(to.String()).Inc() }
