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
