package hub

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/protocol"
)

// metrics are the hub's Prometheus collectors. Labels are low-cardinality:
// method names come from the static method table, close codes from a fixed set.
type metrics struct {
	connections    prometheus.Gauge
	framesIn       prometheus.Counter
	framesOut      prometheus.Counter
	invalidFrames  prometheus.Counter
	compactSkipped prometheus.Counter // compact messages replaced by skipped (or a call answered too_large)
	unknownMethods prometheus.Counter
	strayResponses prometheus.Counter
	disconnects    *prometheus.CounterVec
	// disconnectsBy and disconnectsOther, set once, are disconnects'
	// counters of the close codes with a label of their own and of "other":
	// a close is counted without formatting its code and hashing the label.
	disconnectsBy    map[int]prometheus.Counter
	disconnectsOther prometheus.Counter
	methodSeconds    *prometheus.HistogramVec
	idem             idemMetrics
}

// idemMetrics count requests that carried an idempotency key, by outcome.
type idemMetrics struct {
	first     prometheus.Counter // ran: the first request with its key
	replayed  prometheus.Counter // answered from a finished record
	waited    prometheus.Counter // waited for an in-flight first
	conflicts prometheus.Counter // the key was used for another request
	takeovers prometheus.Counter // ran after a stale pending record
}

func newIdemMetrics(reg prometheus.Registerer) idemMetrics {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "junction_idempotent_requests_total",
		Help: "Requests with an idempotency key, by outcome (first, replayed, waited, conflict, taken_over).",
	}, []string{"outcome"})
	if reg != nil {
		reg.MustRegister(v)
	}
	return idemMetrics{first: v.WithLabelValues("first"), replayed: v.WithLabelValues("replayed"),
		waited: v.WithLabelValues("waited"), conflicts: v.WithLabelValues("conflict"), takeovers: v.WithLabelValues("taken_over")}
}

func newMetrics(reg prometheus.Registerer, h *Hub) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "junction_connections", Help: "Open WebSocket connections.",
		}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_frames_in_total", Help: "Protocol frames received from clients.",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_frames_out_total", Help: "Protocol frames queued to clients.",
		}),
		invalidFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_invalid_frames_total", Help: "Frames refused as invalid_frame.",
		}),
		compactSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_compact_skipped_total", Help: "Messages not sent to compact connections because they were over the connection's frame limit (skipped, or a relayed call answered too_large).",
		}),
		unknownMethods: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_unknown_method_total", Help: "Requests for methods that do not exist.",
		}),
		strayResponses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_stray_responses_total", Help: "Responses from clients that matched no pending server request.",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_disconnects_total", Help: "Closed connections by close code (4108 = slow consumer).",
		}, []string{"code"}),
		methodSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "junction_method_duration_seconds",
			Help:    "Time to handle a request, by method and outcome (ok or error code).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "outcome"}),
		idem: newIdemMetrics(reg),
	}
	// Every close code is exported from the start, at zero, so that
	// dashboards and alerts see the series before the first disconnect.
	m.disconnectsBy = map[int]prometheus.Counter{}
	m.disconnectsOther = m.disconnects.WithLabelValues("other")
	for _, d := range protocol.Disconnects() {
		m.disconnectsBy[d.Code] = m.disconnects.WithLabelValues(closeLabel(d.Code))
	}
	m.disconnectsBy[protocol.CloseAbnormal] = m.disconnects.WithLabelValues(closeLabel(protocol.CloseAbnormal))
	if reg != nil {
		reg.MustRegister(m.connections, m.framesIn, m.framesOut, m.invalidFrames, m.unknownMethods,
			m.strayResponses, m.disconnects, m.methodSeconds, m.compactSkipped)
	}
	return m
}

// disconnected counts a connection closed with code (see closeLabel).
func (m *metrics) disconnected(code int) {
	if c, ok := m.disconnectsBy[code]; ok {
		c.Inc()
		return
	}
	m.disconnectsOther.Inc()
}
