package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Cluster events: the state a cluster's nodes share beyond channels
// (revocations, the lockdown switch) travels as publications on the hub's
// internal topics $sys:KIND, which every node subscribes to at Start. A
// node's handlers of a kind (OnClusterEvent) see every event of the kind,
// the node's own included, in order; the last events of each kind are
// kept in the topic's history (a year), so that a node starting later can
// read the current state (LastClusterEvent). On one node (the memory
// broker) an event reaches the node itself only.
//
// An event lost between nodes is filled from history like any publication;
// one that cannot be filled (a broker that lost its data) is logged, and
// the kind's handlers are not told: a disconnect that did not reach a node
// is caught there by the next authentication of the connection (the
// revocation caches), a lockdown by the next start.

const (
	sysPrefix      = "$sys:"
	sysHistorySize = 64
	sysHistoryTTL  = 365 * 24 * time.Hour

	eventDisconnect = "disconnect"
)

// OnClusterEvent makes fn receive the data of every event of kind
// published by any node (this one included), on the broker's delivery path:
// fn must not block. Call it before Start; a kind has one handler.
func (h *Hub) OnClusterEvent(kind string, fn func(data json.RawMessage)) {
	if h.started.Load() {
		panic("hub: OnClusterEvent after Start")
	}
	h.clusterEvents[kind] = fn
}

// PublishClusterEvent sends data (a JSON value) to the handlers of kind on
// every node.
func (h *Hub) PublishClusterEvent(ctx context.Context, kind string, data json.RawMessage) error {
	if _, err := h.ch.streams.Publish(ctx, sysPrefix+kind, data,
		PublishOptions{HistorySize: sysHistorySize, HistoryTTL: sysHistoryTTL}); err != nil {
		return fmt.Errorf("hub: publish cluster event %s: %w", kind, err)
	}
	return nil
}

// LastClusterEvent returns the data of the last event of kind the broker
// retains, or ok false.
func (h *Hub) LastClusterEvent(ctx context.Context, kind string) (json.RawMessage, bool, error) {
	pubs, _, err := h.ch.streams.History(ctx, sysPrefix+kind, nil, 0)
	if err != nil {
		return nil, false, fmt.Errorf("hub: last cluster event %s: %w", kind, err)
	}
	if len(pubs) == 0 {
		return nil, false, nil
	}
	return pubs[len(pubs)-1].Data, true, nil
}

// subscribeEvents subscribes to the topics of the kinds handled (Start).
func (h *Hub) subscribeEvents(ctx context.Context) error {
	for kind := range h.clusterEvents {
		if err := h.ch.streams.Subscribe(ctx, sysPrefix+kind); err != nil {
			return fmt.Errorf("hub: subscribe to cluster events %s: %w", kind, err)
		}
	}
	return nil
}

// handleEvent runs on the broker's delivery path for a $sys: topic.
func (h *Hub) handleEvent(kind string, pub Publication) {
	fn := h.clusterEvents[kind]
	if fn == nil {
		return
	}
	if pub.Epoch == "" && pub.Data == nil {
		// A reset marker: events were lost and could not be filled.
		h.log.Warn("cluster events lost", "kind", kind)
		return
	}
	fn(pub.Data)
}

func isEventTopic(topic string) (string, bool) { return strings.CutPrefix(topic, sysPrefix) }

// DisconnectMatch selects connections for DisconnectEverywhere: every
// non-empty field must equal the connection's principal's, and at least
// one must be set.
type DisconnectMatch struct {
	UserID    string `json:"user,omitempty"`
	DeviceID  string `json:"device,omitempty"`
	SessionID string `json:"session,omitempty"`
	AppID     string `json:"app,omitempty"`
	TokenID   string `json:"token,omitempty"`
}

func (m DisconnectMatch) empty() bool { return m == DisconnectMatch{} }

func (m DisconnectMatch) matches(c *Conn) bool {
	p := c.Principal()
	return (m.UserID == "" || m.UserID == p.UserID) && (m.DeviceID == "" || m.DeviceID == p.DeviceID) &&
		(m.SessionID == "" || m.SessionID == p.SessionID) && (m.AppID == "" || m.AppID == p.AppID) &&
		(m.TokenID == "" || m.TokenID == p.TokenID)
}

// disconnectEvent is the data of a disconnect cluster event.
type disconnectEvent struct {
	Match  DisconnectMatch `json:"match"`
	Code   int             `json:"code"`
	Origin string          `json:"origin"`
}

// DisconnectEverywhere closes with d the connections m selects: on this
// node at once (it returns how many), and on every other node of a cluster
// as soon as the event reaches it (a revocation on node A closes the
// device's connection on node B). The error says the other nodes were not
// told (the local ones are closed regardless).
func (h *Hub) DisconnectEverywhere(ctx context.Context, m DisconnectMatch, d protocol.Disconnect) (int, error) {
	if m.empty() {
		return 0, fmt.Errorf("hub: disconnect everywhere: empty match")
	}
	n := h.disconnectLocal(m, d)
	data, err := jsonMarshal(disconnectEvent{Match: m, Code: d.Code, Origin: h.cfg.NodeID})
	if err != nil {
		return n, err
	}
	return n, h.PublishClusterEvent(ctx, eventDisconnect, data)
}

// disconnectLocal closes this node's connections m selects.
func (h *Hub) disconnectLocal(m DisconnectMatch, d protocol.Disconnect) int {
	var conns []*Conn
	switch {
	case m.DeviceID != "":
		if c := h.reg.byDevice(m.DeviceID); c != nil && m.matches(c) {
			conns = append(conns, c)
		}
	case m.UserID != "":
		h.reg.eachOfUser(m.UserID, func(c *Conn) {
			if m.matches(c) {
				conns = append(conns, c)
			}
		})
	default:
		h.eachConn(func(c *Conn) {
			if m.matches(c) {
				conns = append(conns, c)
			}
		})
	}
	for _, c := range conns {
		c.Disconnect(d)
	}
	return len(conns)
}

// handleDisconnectEvent applies another node's DisconnectEverywhere.
func (h *Hub) handleDisconnectEvent(data json.RawMessage) {
	var e disconnectEvent
	if err := json.Unmarshal(data, &e); err != nil || e.Match.empty() {
		h.log.Warn("bad disconnect event", "err", err)
		return
	}
	if e.Origin == h.cfg.NodeID {
		return // closed locally already
	}
	d, _ := protocol.DisconnectFor(e.Code)
	if n := h.disconnectLocal(e.Match, d); n > 0 {
		h.log.Info("closed connections on another node's request", "node", e.Origin, "code", e.Code, "closed", n)
	}
}
