package hub

// A subscription's life: a connection's subscriptions, subscribe (join,
// snapshot, attach), detach and unsubscribe.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/junctionhq/junction/protocol"
)

// info describes the subscriber's connection in presence and join/leave
// messages. It is derived when needed rather than held by every
// subscription (a connection's identity does not change: auth.refresh keeps
// its user, device and kind).
func (s *subscriber) info() ClientInfo { return *clientInfo(s.conn) }

func clientInfo(c *Conn) *ClientInfo {
	p := c.Principal()
	return &ClientInfo{ConnID: c.ID(), UserID: p.UserID, DeviceID: p.DeviceID, Kind: p.Kind, NodeID: c.hub.cfg.NodeID, Info: connInfo(c)}
}

// connSubsOf returns the connection's subscriptions, or nil.
func connSubsOf(c *Conn) *connSubs {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs
}

// take removes and returns the subscription to topic (only if it is s, when
// s is not nil).
func (cs *connSubs) take(topic string, s *subscriber) *subscriber {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	got := cs.get(topic)
	if got == nil || (s != nil && got != s) {
		return nil
	}
	cs.del(got)
	return got
}

// connSubsFor returns the connection's subscriptions, creating them. Only the
// connection's request goroutine creates them (channel methods are Serial).
// OnClose hands them to connClosed; on a connection already closed they
// start closed, so nothing subscribes.
func (h *Hub) connSubsFor(c *Conn) *connSubs {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		c.subs = &connSubs{closed: c.closed}
	}
	return c.subs
}

// connClosed drops a closed connection's subscriptions. It runs on a
// transport goroutine, so the broker calls happen on a hub goroutine.
func (h *Hub) connClosed(cs *connSubs) {
	cs.mu.Lock()
	cs.closed = true
	subs := cs.clear()
	cs.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	for _, s := range subs {
		s.clear(subLive) // stop direct sends at once
	}
	if h.closed.Load() {
		return
	}
	h.Go(func(ctx context.Context) {
		for _, s := range subs {
			h.detach(ctx, s)
		}
	})
}

// subscribe handles channel.subscribe.
func (h *Hub) subscribe(ctx context.Context, call *Call, p *subscribeParams) (*protocol.SubscribeResult, error) {
	ns, t, err := h.ch.resolve(p.Topic)
	if err != nil {
		return nil, err
	}
	if err := ns.authorize(ctx, call.Principal, t, actSubscribe); err != nil {
		return nil, err
	}
	if err := h.interceptSubscribe(ctx, call.Principal, t, call.Conn); err != nil {
		return nil, err
	}
	c := call.Conn
	cs := h.connSubsFor(c)
	name := t.Name // decoded from this request's parameters
	if lt := h.ch.lookup(name); lt != nil {
		// The topic's own copy: its subscribers share one string instead
		// of each holding the one its request decoded.
		name = lt.name
	}
	s := &subscriber{conn: c, wsc: c.ws.Load(), compact: c.compact, topic: name, ns: ns}
	cs.mu.Lock()
	switch {
	case cs.closed:
		cs.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "connection closing")
	case cs.get(t.Name) != nil:
		cs.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeConflict, "already subscribed to %q", t.Name)
	case cs.count() >= h.cfg.MaxSubscriptions:
		cs.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeTooLarge, "too many subscriptions on this connection (max %d)", h.cfg.MaxSubscriptions).
			WithDetail("limit", h.cfg.MaxSubscriptions)
	}
	cs.put(s)
	cs.mu.Unlock()

	res, err := h.join(ctx, s, t, ns, p.Since)
	if err != nil {
		cs.take(t.Name, s)
		h.detach(context.WithoutCancel(ctx), s)
		return nil, err
	}
	call.AfterReply(s.goLive)
	return res, nil
}

// join attaches s to its topic in the joining state, then finds the position
// it joins at (from history, a snapshot or the stream) and adds presence.
// Publications from the attach on are buffered, so that those after the
// position are sent after the reply (goLive): none is lost or sent twice.
func (h *Hub) join(ctx context.Context, s *subscriber, t Topic, ns *namespace, since *StreamPosition) (*protocol.SubscribeResult, error) {
	if err := h.attach(ctx, s); err != nil {
		return nil, err
	}
	b := h.ch.streams
	res := &protocol.SubscribeResult{}
	var pos StreamPosition
	if since != nil {
		pubs, p, err := b.History(ctx, t.Name, since, 0)
		switch {
		case err == nil:
			res.Recovered, res.Publications, pos = true, wirePublications(pubs), p
		case errors.Is(err, ErrHistoryGap):
		default:
			return nil, fmt.Errorf("channel history of %s: %w", t.Name, err)
		}
	}
	if !res.Recovered {
		var err error
		if ns.snapshot != nil {
			res.Snapshot, pos, err = h.takeSnapshot(ctx, ns, t)
		} else {
			pos, err = b.Position(ctx, t.Name)
		}
		if err != nil {
			return nil, err
		}
	}
	res.Epoch, res.Offset = pos.Epoch, pos.Offset
	if !s.ready(pos) {
		return nil, protocol.Errorf(protocol.CodeUnavailable, "too many publications on %q while joining; try again", t.Name)
	}
	if ns.cfg.Presence {
		if err := h.ch.presence.AddPresence(ctx, t.Name, s.conn.ID(), s.info(), h.cfg.PresenceTTL); err != nil {
			return nil, fmt.Errorf("add presence on %s: %w", t.Name, err)
		}
		s.set(subInPresence)
		info := s.info()
		h.control(ctx, t.Name, controlMessage{Kind: "join", Client: &info})
	}
	return res, nil
}

// takeSnapshot asks the namespace's provider for a snapshot consistent with a
// stream position (see SnapshotProvider).
func (h *Hub) takeSnapshot(ctx context.Context, ns *namespace, t Topic) (json.RawMessage, StreamPosition, error) {
	b := h.ch.streams
	for range snapshotAttempts {
		before, err := b.Position(ctx, t.Name)
		if err != nil {
			return nil, StreamPosition{}, fmt.Errorf("channel position of %s: %w", t.Name, err)
		}
		snap, err := ns.snapshot.Snapshot(ctx, t)
		if err != nil {
			return nil, StreamPosition{}, fmt.Errorf("snapshot of %s: %w", t.Name, err)
		}
		if snap.Position != nil {
			return snap.Data, *snap.Position, nil
		}
		after, err := b.Position(ctx, t.Name)
		if err != nil {
			return nil, StreamPosition{}, fmt.Errorf("channel position of %s: %w", t.Name, err)
		}
		if before == after {
			return snap.Data, after, nil
		}
		h.ch.metrics.snapRetries.Inc()
	}
	return nil, StreamPosition{}, protocol.Errorf(protocol.CodeUnavailable, "topic %q is too busy to take a consistent snapshot; try again", t.Name)
}

// attach adds s to its local topic, subscribing the node in the broker when
// s is the topic's first local subscriber.
func (h *Hub) attach(ctx context.Context, s *subscriber) error {
	for {
		lt := h.ch.getOrCreate(s.topic, s.ns)
		lt.mu.Lock()
		if lt.dead {
			lt.mu.Unlock()
			continue
		}
		if s.has(subRemoved) {
			lt.mu.Unlock()
			return protocol.Errorf(protocol.CodeUnavailable, "connection closing")
		}
		if !lt.subscribed {
			err := h.ch.streams.Subscribe(ctx, s.topic)
			if err == nil {
				if err = h.ch.streams.Subscribe(ctx, ctlPrefix+s.topic); err != nil {
					_ = h.ch.streams.Unsubscribe(context.WithoutCancel(ctx), s.topic)
				}
			}
			if err != nil {
				if sp := lt.subs.Load(); sp == nil || len(*sp) == 0 {
					h.ch.forgetLocked(lt)
				}
				lt.mu.Unlock()
				return fmt.Errorf("broker subscribe %s: %w", s.topic, err)
			}
			lt.subscribed = true
		}
		// Append in place when the array has room: a reader holding the
		// previous slice never looks past its own length, so it cannot see
		// the element written there; only removals copy. (Cloning on every
		// subscribe made a ramp to n subscribers copy n²/2 pointers.)
		var next []*subscriber
		if sp := lt.subs.Load(); sp != nil {
			next = *sp
		}
		next = append(next, s)
		lt.subs.Store(&next)
		lt.mu.Unlock()
		h.ch.metrics.subscriptions.Inc()
		return nil
	}
}

// forgetLocked marks lt dead and removes it from its shard. lt.mu is held.
func (cs *channels) forgetLocked(lt *localTopic) {
	lt.dead = true
	s := cs.shard(lt.name)
	s.mu.Lock()
	if s.topics[lt.name] == lt {
		delete(s.topics, lt.name)
	}
	s.mu.Unlock()
}

// detach removes s from its topic (idempotent), unsubscribing the node when
// it was the last local subscriber, and removes its presence.
//
// Removals are combined: whoever holds the topic's lock drops every
// subscriber marked removed by then, in one copy of the list, and marks
// them unlisted; a detach that finds its subscriber unlisted has nothing
// left to do. When n connections of one topic close at once (a network
// blip, a node draining), the list is copied a few times instead of n
// times, and each detach holds the lock briefly instead of O(n) long.
func (h *Hub) detach(ctx context.Context, s *subscriber) {
	if !s.mark(subRemoved) {
		return
	}
	s.clear(subLive)
	for {
		lt := h.ch.lookup(s.topic)
		if lt == nil {
			break // never attached: attach will see removed
		}
		lt.mu.Lock()
		if lt.dead {
			lt.mu.Unlock()
			continue
		}
		if s.has(subUnlisted) {
			lt.mu.Unlock()
			break // removed by an earlier detach's pass
		}
		h.dropRemovedLocked(ctx, lt)
		lt.mu.Unlock()
		break
	}
	if s.unmark(subInPresence) {
		if err := h.ch.presence.RemovePresence(ctx, s.topic, s.conn.ID()); err != nil {
			h.log.Warn("remove presence", "topic", s.topic, "err", err)
		}
		info := s.info()
		h.control(ctx, s.topic, controlMessage{Kind: "leave", Client: &info})
	}
}

// dropRemovedLocked removes every subscriber of lt marked removed (one pass,
// one copy), marks each unlisted, and unsubscribes the node from the
// broker and forgets lt when none is left. lt.mu is held.
func (h *Hub) dropRemovedLocked(ctx context.Context, lt *localTopic) {
	sp := lt.subs.Load()
	if sp == nil {
		return
	}
	cur := *sp
	first := slices.IndexFunc(cur, func(x *subscriber) bool { return x.has(subRemoved) })
	if first < 0 {
		return // s was never attached (attach saw removed)
	}
	next := make([]*subscriber, first, len(cur)-1)
	copy(next, cur[:first])
	dropped := 0
	for _, x := range cur[first:] {
		if x.has(subRemoved) {
			x.set(subUnlisted)
			dropped++
			continue
		}
		next = append(next, x)
	}
	lt.subs.Store(&next)
	h.ch.metrics.subscriptions.Sub(float64(dropped))
	if len(next) > 0 {
		return
	}
	if lt.subscribed {
		if err := h.ch.streams.Unsubscribe(ctx, lt.name); err != nil {
			h.log.Warn("broker unsubscribe", "topic", lt.name, "err", err)
		}
		if err := h.ch.streams.Unsubscribe(ctx, ctlPrefix+lt.name); err != nil {
			h.log.Warn("broker unsubscribe", "topic", ctlPrefix+lt.name, "err", err)
		}
	}
	h.ch.forgetLocked(lt)
}

// dropSubscriber removes a subscription on the server's initiative: the
// client gets channel.unsubscribed. It never blocks (it may run on the
// broker's delivery path).
func (h *Hub) dropSubscriber(s *subscriber, reason string, resubscribe bool) {
	if !s.mark(subKicked) {
		return
	}
	s.clear(subLive)
	data, _ := jsonMarshal(protocol.Unsubscribed{Reason: reason, Resubscribe: resubscribe})
	s.conn.SendEvent(EventChannelUnsubscribed, s.topic, "", 0, data)
	if cs := connSubsOf(s.conn); cs != nil {
		cs.take(s.topic, s)
	}
	if h.closed.Load() {
		return
	}
	h.Go(func(ctx context.Context) { h.detach(ctx, s) })
}

// Unsubscribe removes connection c's subscription to topic on the server's
// initiative; the client receives channel.unsubscribed with reason "server".
// It reports whether c was subscribed.
func (h *Hub) Unsubscribe(c *Conn, topic string) bool {
	cs := connSubsOf(c)
	if cs == nil {
		return false
	}
	cs.mu.Lock()
	s := cs.get(topic)
	cs.mu.Unlock()
	if s == nil {
		return false
	}
	h.dropSubscriber(s, "server", false)
	return true
}
