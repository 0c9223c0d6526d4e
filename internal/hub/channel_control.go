package hub

// Control messages between nodes (join, leave, recheck) and presence
// upkeep.

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// Recheck asks every node to authorize its subscribers of topic again and to
// remove those no longer allowed (channel.unsubscribed, reason "forbidden").
// Call it after a change of permissions (a session unshared, a device
// removed).
func (h *Hub) Recheck(ctx context.Context, topic string) error {
	if _, _, err := h.ch.resolve(topic); err != nil {
		return err
	}
	return h.publishControl(ctx, topic, controlMessage{Kind: "recheck"})
}

func (h *Hub) control(ctx context.Context, topic string, m controlMessage) {
	if err := h.publishControl(ctx, topic, m); err != nil {
		h.log.Warn("channel control message", "topic", topic, "kind", m.Kind, "err", err)
	}
}

func (h *Hub) publishControl(ctx context.Context, topic string, m controlMessage) error {
	data, err := jsonMarshal(m)
	if err != nil {
		return err
	}
	_, err = h.ch.streams.Publish(ctx, ctlPrefix+topic, data, PublishOptions{})
	return err
}

// handleControl runs on the broker's delivery path for a control topic.
func (h *Hub) handleControl(topic string, data json.RawMessage) {
	var m controlMessage
	if err := json.Unmarshal(data, &m); err != nil {
		h.log.Warn("bad channel control message", "topic", topic, "err", err)
		return
	}
	lt := h.ch.lookup(topic)
	if lt == nil {
		return
	}
	sp := lt.subs.Load()
	if sp == nil || len(*sp) == 0 {
		return
	}
	switch m.Kind {
	case "join", "leave":
		if m.Client == nil {
			return
		}
		event := EventChannelJoin
		if m.Kind == "leave" {
			event = EventChannelLeave
		}
		info, _ := jsonMarshal((*protocol.ClientInfo)(m.Client))
		frame := ws.PrepareText(protocol.AppendEvent(nil, event, topic, "", 0, info))
		for _, s := range *sp {
			switch {
			case string(s.conn.ID()[:]) == m.Client.ConnID:
			case s.live():
				s.conn.SendPrepared(frame)
			default:
				s.deliverEventJoining(frame)
			}
		}
	case "recheck":
		subs := slices.Clone(*sp)
		if h.closed.Load() {
			return
		}
		h.Go(func(ctx context.Context) { h.recheck(ctx, topic, subs) })
	}
}

func (h *Hub) recheck(ctx context.Context, topic string, subs []*subscriber) {
	ns, t, err := h.ch.resolve(topic)
	if err != nil {
		// No namespace matches the topic any more (a reload removed it):
		// nobody may subscribe to it.
		for _, s := range subs {
			h.dropSubscriber(s, "forbidden", false)
		}
		return
	}
	for _, s := range subs {
		err := ns.authorize(ctx, s.conn.Principal(), t, actSubscribe)
		if err == nil {
			continue
		}
		if pe := protocol.AsError(err); pe.Code == protocol.CodeForbidden || pe.Code == protocol.CodeUnauthorized {
			h.dropSubscriber(s, "forbidden", false)
		} else {
			h.log.Warn("recheck subscription", "topic", topic, "conn", s.conn.ID(), "err", err)
		}
	}
}

// refreshPresence refreshes the presence entries of this node's subscribers
// (every Config.PresenceTTL/3, one loop for the hub: see startChannels).
func (h *Hub) refreshPresence(ctx context.Context) {
	var subs []*subscriber
	for i := range h.ch.shards {
		sh := &h.ch.shards[i]
		sh.mu.RLock()
		for _, lt := range sh.topics {
			if !lt.ns.cfg.Presence {
				continue
			}
			if sp := lt.subs.Load(); sp != nil {
				for _, s := range *sp {
					if s.has(subInPresence) {
						subs = append(subs, s)
					}
				}
			}
		}
		sh.mu.RUnlock()
	}
	for _, s := range subs {
		if err := h.ch.presence.AddPresence(ctx, s.topic, s.conn.ID(), s.info(), h.cfg.PresenceTTL); err != nil {
			h.log.Warn("refresh presence", "topic", s.topic, "err", err)
			if ctx.Err() != nil {
				return
			}
		}
	}
}
