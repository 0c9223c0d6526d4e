package arbiter

import (
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Counts is a Metrics that counts events by kind and reason, for a caller
// that exports them (a Prometheus collector reading Snapshot, or a test).
// It is safe for concurrent use: arbiters update it from their device
// goroutines while an exporter reads it.
type Counts struct {
	mu sync.Mutex
	m  map[CountKey]uint64 // guarded by mu
}

// CountKey is one counter of Counts: an event kind and its reason (empty
// for kinds without one).
type CountKey struct {
	Kind   Kind
	Reason Reason
}

var _ Metrics = (*Counts)(nil)

// Event counts one event.
func (c *Counts) Event(kind Kind, reason Reason) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[CountKey]uint64)
	}
	c.m[CountKey{kind, reason}]++
	c.mu.Unlock()
}

// Snapshot returns a copy of the counters.
func (c *Counts) Snapshot() map[CountKey]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

// Prometheus is a Metrics that counts events on a Prometheus counter,
// junction_output_events_total{kind, reason}. One serves every device's
// Arbiter.
type Prometheus struct {
	events *prometheus.CounterVec
}

var _ Metrics = (*Prometheus)(nil)

// NewPrometheus registers the counter on reg (nil: not registered).
func NewPrometheus(reg prometheus.Registerer) *Prometheus {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "junction_output_events_total",
		Help: "Output arbiter events by kind (queued, shown, superseded, rejected, expired, cleared, hidden, restored) and reason.",
	}, []string{"kind", "reason"})
	if reg != nil {
		reg.MustRegister(v)
	}
	return &Prometheus{events: v}
}

// Event counts one event.
func (p *Prometheus) Event(kind Kind, reason Reason) {
	p.events.WithLabelValues(kind.String(), string(reason)).Inc()
}
