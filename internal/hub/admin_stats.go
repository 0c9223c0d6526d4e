package hub

// The admin statistics stream: once a second, while admin:stats has
// subscribers on this node, the node publishes there an AdminStats of its
// traffic over the last interval, computed from the hub's own counters
// (the Prometheus collectors it owns, read in memory; /metrics is not
// scraped).

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/junctionhq/junction/protocol"
)

// adminStatsEvery is how often the statistics are published.
const adminStatsEvery = time.Second

// adminNamespace is the built-in namespace of the server's admin streams
// (protocol.AdminStatsTopic): admins subscribe, only the server publishes.
func adminNamespace() NamespaceConfig {
	return NamespaceConfig{Pattern: "admin:{stream}", Subscribe: []string{"scope=admin"}, Publish: []string{"none"},
		HistorySize: 60, HistoryTTL: 2 * time.Minute}
}

// statsSample is a reading of the hub's counters at one time.
type statsSample struct {
	at           time.Time
	publications uint64
	deliveries   uint64
	rpcCalls     uint64
	requests     histSample // every method
	rpc          histSample // rpc.call
}

// histSample is a histogram's reading: cumulative counts per upper bound
// (seconds), without the +Inf bucket, and the total count.
type histSample struct {
	bounds []float64
	cum    []uint64
	count  uint64
}

// add adds a histogram reading of the same buckets (another series of a vec).
func (s *histSample) add(h *dto.Histogram) {
	if s.bounds == nil {
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), +1) {
				s.bounds = append(s.bounds, b.GetUpperBound())
			}
		}
		s.cum = make([]uint64, len(s.bounds))
	}
	for i, b := range h.GetBucket() {
		if i < len(s.cum) {
			s.cum[i] += b.GetCumulativeCount()
		}
	}
	s.count += h.GetSampleCount()
}

// since returns the observations of s not in prev (an earlier reading).
func (s histSample) since(prev histSample) histSample {
	d := histSample{bounds: s.bounds, cum: make([]uint64, len(s.cum)), count: s.count - min(prev.count, s.count)}
	for i := range s.cum {
		if i < len(prev.cum) {
			d.cum[i] = s.cum[i] - min(prev.cum[i], s.cum[i])
		} else {
			d.cum[i] = s.cum[i]
		}
	}
	return d
}

// quantileMs estimates the q-quantile in milliseconds, linearly within
// the bucket that holds it, as Prometheus' histogram_quantile does; an
// observation beyond the last finite bound counts as that bound. 0 when
// there is none.
func (s histSample) quantileMs(q float64) float64 {
	if s.count == 0 || len(s.bounds) == 0 {
		return 0
	}
	rank := q * float64(s.count)
	lower, below := 0.0, uint64(0)
	for i, upper := range s.bounds {
		if float64(s.cum[i]) >= rank {
			in := s.cum[i] - below
			if in == 0 {
				return upper * 1000
			}
			return (lower + (upper-lower)*(rank-float64(below))/float64(in)) * 1000
		}
		lower, below = upper, s.cum[i]
	}
	return s.bounds[len(s.bounds)-1] * 1000
}

// collect calls fn with each metric of c, read in memory.
func collect(c prometheus.Collector, fn func(*dto.Metric)) {
	ch := make(chan prometheus.Metric, 16)
	done := make(chan struct{})
	go func() { // drained below, so it always ends
		defer close(done)
		c.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil {
			fn(&d)
		}
	}
	<-done
}

func counterValue(c prometheus.Collector) uint64 {
	var v float64
	collect(c, func(m *dto.Metric) { v += m.GetCounter().GetValue() })
	return uint64(v)
}

// sampleStats reads the hub's counters.
func (h *Hub) sampleStats() statsSample {
	s := statsSample{
		at:           h.deps.Now(),
		publications: counterValue(h.ch.metrics.publications),
		deliveries:   counterValue(h.ch.metrics.deliveries),
	}
	// Calls of this node's callers: not those other nodes forwarded here
	// (path "served"), which their own nodes count.
	collect(h.rpc.metrics.calls, func(m *dto.Metric) {
		for _, l := range m.GetLabel() {
			if l.GetName() == "path" && l.GetValue() == "served" {
				return
			}
		}
		s.rpcCalls += uint64(m.GetCounter().GetValue())
	})
	collect(h.metrics.methodSeconds, func(m *dto.Metric) {
		s.requests.add(m.GetHistogram())
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && l.GetValue() == "rpc.call" {
				s.rpc.add(m.GetHistogram())
			}
		}
	})
	return s
}

// adminStats is the AdminStats of the interval from prev to cur, with the
// connections open now.
func (h *Hub) adminStats(prev, cur statsSample) protocol.AdminStats {
	iv := cur.at.Sub(prev.at)
	per := func(n uint64) float64 {
		if iv <= 0 {
			return 0
		}
		return float64(n) / iv.Seconds()
	}
	delta := func(c, p uint64) uint64 { return c - min(p, c) }
	req, rpc := cur.requests.since(prev.requests), cur.rpc.since(prev.rpc)
	pubs, dels, calls := delta(cur.publications, prev.publications), delta(cur.deliveries, prev.deliveries), delta(cur.rpcCalls, prev.rpcCalls)
	return protocol.AdminStats{
		NodeID: h.NodeID(), At: cur.at.UTC(), IntervalMs: iv.Milliseconds(),
		Connections: h.Len(), ConnectionsByKind: h.kinds.byKind(),
		Publications: pubs, PublicationsPerSec: per(pubs),
		Deliveries: dels, DeliveriesPerSec: per(dels),
		Requests: req.count, RequestsPerSec: per(req.count),
		RequestLatency: protocol.AdminLatency{P50Ms: req.quantileMs(0.5), P99Ms: req.quantileMs(0.99)},
		RPCCalls:       calls, RPCCallsPerSec: per(calls),
		RPCLatency: protocol.AdminLatency{P50Ms: rpc.quantileMs(0.5), P99Ms: rpc.quantileMs(0.99)},
	}
}

// runAdminStats publishes the statistics every adminStatsEvery while
// admin:stats has subscribers on this node. Without subscribers it reads
// nothing; the first tick with subscribers takes the baseline, the next
// publishes.
func (h *Hub) runAdminStats(ctx context.Context) {
	t := time.NewTicker(adminStatsEvery)
	defer t.Stop()
	var prev *statsSample
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if h.Subscribers(protocol.AdminStatsTopic) == 0 {
			prev = nil
			continue
		}
		cur := h.sampleStats()
		if prev != nil {
			h.publishAdminStats(ctx, h.adminStats(*prev, cur))
		}
		prev = &cur
	}
}

func (h *Hub) publishAdminStats(ctx context.Context, st protocol.AdminStats) {
	data, err := jsonMarshal(st)
	if err != nil {
		h.log.Error("admin stats: encode", "err", err)
		return
	}
	if _, err := h.Publish(ctx, protocol.AdminStatsTopic, data); err != nil && ctx.Err() == nil {
		h.log.Warn("admin stats: publish", "err", err)
	}
}
