package hub

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// ReloadNamespaces replaces the declared namespaces while the hub runs
// (configuration reload): the new set is compiled and its snapshot
// providers and owner lookups resolved first, so that an invalid set
// changes nothing and answers the error. Once it returned nil, every
// subscribe, publish, presence and history request resolves topics
// against the new set (rules, history and presence options, snapshot
// provider). Subscriptions already made to topics of a namespace whose
// pattern or subscribe rules changed are rechecked in the background: one the rules no longer allow, or
// whose topic no namespace matches any more, ends with channel.unsubscribed
// (reason "forbidden"), as after Recheck. The others stay, with the options
// (history, presence) their topic had when it was first subscribed on this
// node, until they end.
func (h *Hub) ReloadNamespaces(declared []NamespaceConfig) error {
	nss, err := compileNamespaces(declared)
	if err != nil {
		return fmt.Errorf("hub config: %w", err)
	}
	for name, ns := range nss {
		if ns.cfg.Snapshot != "" {
			p := h.ch.snapshots[ns.cfg.Snapshot]
			if p == nil {
				return fmt.Errorf("hub config: namespace %q: no snapshot provider %q registered", name, ns.cfg.Snapshot)
			}
			ns.snapshot = p
		}
		ns.owner = h.ch.owners[ns.cfg.Owner]
	}
	prev := h.ch.namespaces
	if r := h.ch.reloaded.Load(); r != nil {
		prev = *r
	}
	h.ch.reloaded.Store(&nss)
	h.recheckChanged(prev, nss)
	return nil
}

// recheckChanged rechecks, in the background, this node's subscriptions to
// topics whose namespace's pattern, owner lookup or subscribe rules differ between prev
// and next (or that next lacks).
func (h *Hub) recheckChanged(prev, next map[string]*namespace) {
	changed := func(name string) bool {
		a, b := prev[name], next[name]
		return a == nil || b == nil || a.cfg.Pattern != b.cfg.Pattern || a.cfg.Owner != b.cfg.Owner || !slices.Equal(a.cfg.Subscribe, b.cfg.Subscribe)
	}
	byTopic := map[string][]*subscriber{}
	for i := range h.ch.shards {
		sh := &h.ch.shards[i]
		sh.mu.RLock()
		for topic, lt := range sh.topics {
			name, _, _ := strings.Cut(topic, ":")
			if !changed(name) {
				continue
			}
			if sp := lt.subs.Load(); sp != nil && len(*sp) > 0 {
				byTopic[topic] = slices.Clone(*sp)
			}
		}
		sh.mu.RUnlock()
	}
	if len(byTopic) == 0 || h.closed.Load() {
		return
	}
	h.Go(func(ctx context.Context) {
		for topic, subs := range byTopic {
			if ctx.Err() != nil {
				return
			}
			h.recheck(ctx, topic, subs)
		}
	})
}

// Limits are the hub's limits a configuration reload may change: Config's
// fields of the same names and meaning (zero selects the default, negative
// disables).
type Limits struct {
	MaxConnections        int
	MaxConnectionsPerUser int
	RequestsPerSecond     int
	RequestBurst          int
}

// SetLimits replaces the limits while the hub runs (configuration reload).
// Connection counts apply to the next handshakes (connections over a
// lowered limit stay open); request rates to every connection's next
// request, its token bucket carried over; welcome events show the new
// values from then on.
func (h *Hub) SetLimits(l Limits) {
	c := Config{NodeID: h.cfg.NodeID, MaxConnections: l.MaxConnections, MaxConnectionsPerUser: l.MaxConnectionsPerUser,
		RequestsPerSecond: l.RequestsPerSecond, RequestBurst: l.RequestBurst}
	c.setDefaults()
	h.lim.Store(&Limits{MaxConnections: c.MaxConnections, MaxConnectionsPerUser: c.MaxConnectionsPerUser,
		RequestsPerSecond: c.RequestsPerSecond, RequestBurst: c.RequestBurst})
}

// limitsOf returns lim, or Config's limits when it is nil (no SetLimits).
func (h *Hub) limitsOf(lim *Limits) Limits {
	if lim != nil {
		return *lim
	}
	return Limits{MaxConnections: h.cfg.MaxConnections, MaxConnectionsPerUser: h.cfg.MaxConnectionsPerUser,
		RequestsPerSecond: h.cfg.RequestsPerSecond, RequestBurst: h.cfg.RequestBurst}
}
