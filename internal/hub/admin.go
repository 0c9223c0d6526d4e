package hub

// Read-only enumeration of the node's state for the admin API (web's
// /api/v1/admin/...): connections, channels and serving machines, each
// listed in pages of at most AdminMaxPage. None of it is on a hot path: a
// listing walks the node's connections or topics once, taking each lock
// briefly and never two at once (docs/LOCKORDER.md).

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// Page sizes of the admin listings.
const (
	AdminDefaultPage = 100
	AdminMaxPage     = 1000
	// adminMaxChannelConns bounds the subscriber ids of one channel's
	// detail.
	adminMaxChannelConns = 1000
)

// kindOther and kindApp are the connection kinds besides auth.Kinds: app
// keys, and principals of no known kind.
const (
	kindApp   = "app"
	kindOther = "other"
)

// kindCounts counts the registered connections by kind, for the admin
// statistics: a slot per auth.Kinds entry, then app keys and other.
type kindCounts [kindSlots]atomic.Int64

const (
	kindSlots = 16 // more than len(auth.Kinds)+2
	slotApp   = kindSlots - 2
	slotOther = kindSlots - 1
)

// kindSlot is p's slot in kindCounts.
func kindSlot(p *auth.Principal) uint8 {
	if i := slices.Index(auth.Kinds, p.Kind); i >= 0 && i < slotApp {
		return uint8(i)
	}
	if p.AppID != "" {
		return slotApp
	}
	return slotOther
}

// kindName is the name of a kindCounts slot.
func kindName(slot uint8) string {
	switch {
	case slot == slotApp:
		return kindApp
	case int(slot) < len(auth.Kinds) && slot < slotApp:
		return auth.Kinds[slot]
	}
	return kindOther
}

// add counts c, registered now, under its kind (remembered on c so that
// remove finds the same slot after an auth.refresh).
func (k *kindCounts) add(c *Conn) {
	c.kind = kindSlot(c.Principal())
	k[c.kind].Add(1)
}

func (k *kindCounts) remove(c *Conn) { k[c.kind].Add(-1) }

// byKind returns the counts by kind name; every kind is present.
func (k *kindCounts) byKind() map[string]int {
	out := make(map[string]int, len(auth.Kinds)+2)
	for i := range min(len(auth.Kinds), slotApp) {
		out[auth.Kinds[i]] = int(k[i].Load())
	}
	out[kindApp] = int(k[slotApp].Load())
	out[kindOther] = int(k[slotOther].Load())
	return out
}

// ConnFilter selects the connections Hub.AdminConnections lists; empty
// fields match everything.
type ConnFilter struct {
	UserID, DeviceID string
	// Kind is a device kind (auth.Kinds), "app" or "other".
	Kind string
	// NodeID matches this node or nothing.
	NodeID string
	// Cursor lists the connections with ids after it (the previous page's
	// NextCursor).
	Cursor string
	// Limit is the page size: AdminDefaultPage when 0, at most AdminMaxPage.
	Limit int
}

func pageLimit(n int) int {
	if n <= 0 {
		return AdminDefaultPage
	}
	return min(n, AdminMaxPage)
}

// AdminConnections lists this node's open connections that match f, by
// connection id, one page at a time.
func (h *Hub) AdminConnections(f ConnFilter) protocol.AdminConnectionList {
	out := protocol.AdminConnectionList{Items: []protocol.AdminConnection{}}
	if f.NodeID != "" && f.NodeID != h.NodeID() {
		return out
	}
	var conns []*Conn
	keep := func(c *Conn) {
		p := c.Principal()
		if string(c.id[:]) <= f.Cursor || !c.registered() ||
			(f.UserID != "" && p.UserID != f.UserID) ||
			(f.DeviceID != "" && p.DeviceID != f.DeviceID) ||
			(f.Kind != "" && kindName(kindSlot(p)) != f.Kind) {
			return
		}
		conns = append(conns, c)
	}
	switch {
	case f.DeviceID != "":
		if c := h.reg.byDevice(f.DeviceID); c != nil {
			keep(c)
		}
	case f.UserID != "":
		h.reg.eachOfUser(f.UserID, keep)
	default:
		h.eachConn(keep)
	}
	slices.SortFunc(conns, func(a, b *Conn) int { return cmp.Compare(string(a.id[:]), string(b.id[:])) })
	limit := pageLimit(f.Limit)
	if len(conns) > limit {
		conns = conns[:limit]
		out.NextCursor = conns[limit-1].ID()
	}
	for _, c := range conns {
		out.Items = append(out.Items, h.adminConn(c))
	}
	return out
}

func (h *Hub) adminConn(c *Conn) protocol.AdminConnection {
	ac := protocol.AdminConnection{ID: c.ID(), NodeID: h.NodeID(), Principal: c.Principal().Info(),
		ConnectedAt: time.Unix(0, c.since).UTC()}
	if a := c.RemoteAddr(); a != nil {
		ac.RemoteAddr = a.String()
	}
	return ac
}

// connByID finds a registered connection of this node by id, or nil. The
// registry keeps no index by id (see eachConn): it walks the node's
// connections, which is fine for an operator's request.
func (h *Hub) connByID(id string) *Conn {
	var found *Conn
	h.eachConn(func(c *Conn) {
		if string(c.id[:]) == id {
			found = c
		}
	})
	return found
}

// AdminConnection describes one open connection of this node: who, from
// where, since when, its subscriptions, the RPC methods it serves and its
// outbound queue. It answers not_found for an unknown id.
func (h *Hub) AdminConnection(id string) (protocol.AdminConnectionDetail, error) {
	c := h.connByID(id)
	if c == nil {
		return protocol.AdminConnectionDetail{}, errNoConn(id)
	}
	d := protocol.AdminConnectionDetail{AdminConnection: h.adminConn(c), Subscriptions: []string{}, Methods: []string{}}
	if cs := connSubsOf(c); cs != nil {
		cs.mu.Lock()
		for _, s := range cs.list() {
			d.Subscriptions = append(d.Subscriptions, s.topic)
		}
		cs.mu.Unlock()
		slices.Sort(d.Subscriptions)
	}
	if srv := serverOf(c); srv != nil {
		srv.mu.Lock()
		d.Methods = srv.methodList()
		srv.mu.Unlock()
	}
	if w := c.ws.Load(); w != nil {
		d.QueueFrames, d.QueueBytes = w.QueueLen()
	}
	return d, nil
}

// AdminDisconnect closes one connection of this node with d (the admin
// API uses protocol.DisconnectAdmin, 4011). It answers not_found for an
// unknown id.
func (h *Hub) AdminDisconnect(id string, d protocol.Disconnect) error {
	c := h.connByID(id)
	if c == nil {
		return errNoConn(id)
	}
	c.Disconnect(d)
	return nil
}

func errNoConn(id string) *protocol.Error {
	return protocol.Errorf(protocol.CodeNotFound, "no open connection %q on this node", id)
}

// AdminChannels lists the topics with subscribers on this node, by name,
// one page at a time: those after cursor, at most limit (AdminDefaultPage
// when 0, at most AdminMaxPage).
func (h *Hub) AdminChannels(cursor string, limit int) protocol.AdminChannelList {
	out := protocol.AdminChannelList{Items: []protocol.AdminChannel{}}
	var items []protocol.AdminChannel
	for i := range h.ch.shards {
		s := &h.ch.shards[i]
		s.mu.RLock()
		for name, lt := range s.topics {
			if name <= cursor {
				continue
			}
			if n := lt.subscriberCount(); n > 0 {
				items = append(items, protocol.AdminChannel{Topic: name, NodeID: h.NodeID(), Subscribers: n})
			}
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(items, func(a, b protocol.AdminChannel) int { return cmp.Compare(a.Topic, b.Topic) })
	limit = pageLimit(limit)
	if len(items) > limit {
		items = items[:limit]
		out.NextCursor = items[limit-1].Topic
	}
	out.Items = append(out.Items, items...)
	return out
}

// subscriberCount is the number of the topic's local subscribers.
func (lt *localTopic) subscriberCount() int {
	if sp := lt.subs.Load(); sp != nil {
		return len(*sp)
	}
	return 0
}

// AdminChannel describes one channel: this node's subscribers, the
// presence set when its namespace keeps one, and its stream position. A
// topic no namespace matches answers not_found, a malformed one
// bad_request.
func (h *Hub) AdminChannel(ctx context.Context, topic string) (protocol.AdminChannelDetail, error) {
	ns, _, err := h.ch.resolve(topic)
	if err != nil {
		return protocol.AdminChannelDetail{}, err
	}
	d := protocol.AdminChannelDetail{AdminChannel: protocol.AdminChannel{Topic: topic, NodeID: h.NodeID()},
		Connections: []string{}, HistorySize: ns.cfg.HistorySize}
	if lt := h.ch.lookup(topic); lt != nil {
		if sp := lt.subs.Load(); sp != nil {
			for _, s := range *sp {
				d.Connections = append(d.Connections, s.conn.ID())
			}
		}
	}
	d.Subscribers = len(d.Connections)
	slices.Sort(d.Connections)
	d.Connections = d.Connections[:min(len(d.Connections), adminMaxChannelConns)]
	if ns.cfg.Presence {
		clients, err := h.ch.presence.Presence(ctx, topic)
		if err != nil {
			return protocol.AdminChannelDetail{}, fmt.Errorf("presence of %s: %w", topic, err)
		}
		if clients == nil {
			clients = map[string]ClientInfo{}
		}
		d.Presence = clients
	}
	pos, err := h.ch.streams.Position(ctx, topic)
	if err != nil {
		return protocol.AdminChannelDetail{}, fmt.Errorf("position of %s: %w", topic, err)
	}
	d.Epoch, d.Offset = pos.Epoch, pos.Offset
	return d, nil
}

// AdminMachines lists the devices serving RPC methods on this node, by
// device id, one page at a time: those after cursor (of userID's devices
// when it is set), at most limit (AdminDefaultPage when 0, at most
// AdminMaxPage).
func (h *Hub) AdminMachines(userID, cursor string, limit int) protocol.AdminMachineList {
	r := h.rpc
	r.mu.RLock()
	servers := make([]*rpcServer, 0, len(r.servers))
	for d, s := range r.servers {
		if d > cursor {
			servers = append(servers, s)
		}
	}
	r.mu.RUnlock()
	var items []protocol.AdminMachine
	for _, s := range servers {
		p := s.conn.Principal()
		if s.conn.Closed() || (userID != "" && p.UserID != userID) {
			continue
		}
		s.mu.Lock()
		methods := s.methodList()
		s.mu.Unlock()
		items = append(items, protocol.AdminMachine{DeviceID: p.DeviceID, UserID: p.UserID, Kind: p.Kind,
			ConnID: s.conn.ID(), NodeID: h.NodeID(), Methods: methods})
	}
	slices.SortFunc(items, func(a, b protocol.AdminMachine) int { return cmp.Compare(a.DeviceID, b.DeviceID) })
	out := protocol.AdminMachineList{Items: []protocol.AdminMachine{}}
	limit = pageLimit(limit)
	if len(items) > limit {
		items = items[:limit]
		out.NextCursor = items[limit-1].DeviceID
	}
	out.Items = append(out.Items, items...)
	return out
}
