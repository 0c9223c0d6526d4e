package cluster

import "github.com/prometheus/client_golang/prometheus"

// Register exports the broker's counters (Stats) on reg, all from zero, so
// that every gap, reset and reconnect shows in /metrics:
//
//	junction_broker_publications_total{outcome}: published, delivered,
//	  filled (delivered from a stream to fill a gap)
//	junction_broker_resets_total: gaps that could not be filled, and topics in a
//	  new epoch (Redis lost them): subscribers reset
//	junction_broker_dropped_total: messages dropped by a full queue (then filled)
//	junction_broker_resubscribed_total: topics resubscribed after a pub/sub reconnect
//	junction_broker_position_checks_total: topic position checks
//	junction_broker_pubsub_errors_total: pub/sub read errors (each one a reconnect)
//	junction_broker_node_messages_total: node messages sent (SendToNode)
//	junction_broker_node_batches_total: pipelines (Redis round trips) that carried them
//	junction_broker_publish_batches_total: batches of a connection's consecutive
//	  publications published in one pipeline (hub.BatchPublisher)
func (b *Broker) Register(reg prometheus.Registerer) error {
	s := &b.stats
	counter := func(name, help string, labels prometheus.Labels, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) })
	}
	pubs := "Publications by outcome: published by this node, delivered to it, and of those filled from a stream."
	for _, c := range []prometheus.Collector{
		counter("junction_broker_publications_total", pubs, prometheus.Labels{"outcome": "published"}, s.published.Load),
		counter("junction_broker_publications_total", pubs, prometheus.Labels{"outcome": "delivered"}, s.delivered.Load),
		counter("junction_broker_publications_total", pubs, prometheus.Labels{"outcome": "filled"}, s.filled.Load),
		counter("junction_broker_resets_total", "Gaps that could not be filled from a stream, and topics in a new epoch (Redis lost them): the topic's subscribers were reset.", nil, s.resets.Load),
		counter("junction_broker_dropped_total", "Pub/sub messages dropped by a full queue (each then filled or reset).", nil, s.dropped.Load),
		counter("junction_broker_resubscribed_total", "Topics resubscribed after a pub/sub reconnect (each then checked).", nil, s.resubscribed.Load),
		counter("junction_broker_position_checks_total", "Topic position checks run.", nil, s.checks.Load),
		counter("junction_broker_pubsub_errors_total", "Pub/sub read errors (each one a reconnect).", nil, s.receiveErrors.Load),
		counter("junction_broker_node_messages_total", "Node messages sent to other nodes (RPC relay), each one PUBLISH.", nil, s.nodeSent.Load),
		counter("junction_broker_node_batches_total", "Pipelines (Redis round trips) that carried the node messages: concurrent messages share one.", nil, s.nodeBatches.Load),
		counter("junction_broker_publish_batches_total", "Batches of a connection's consecutive publications published in one pipeline per shard.", nil, s.publishBatches.Load),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
