package hub

import (
	"fmt"
)

// ReloadNamespaces replaces the declared namespaces while the hub runs
// (configuration reload): the new set is compiled and its snapshot
// providers and owner lookups resolved first, so that an invalid set
// changes nothing and answers the error. Once it returned nil, every
// subscribe, publish, presence and history request resolves topics
// against the new set (rules, history and presence options, snapshot
// provider). Subscriptions already made stay, with the options their
// topic had when it was first subscribed on this node, until they end;
// they are not rechecked against the new rules.
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
	h.ch.reloaded.Store(&nss)
	return nil
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
