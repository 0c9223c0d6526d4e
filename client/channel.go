package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Publication is one message of a channel, as delivered to a Subscription's
// handler.
type Publication struct {
	Topic  string
	Epoch  string
	Offset uint64
	// Event is the publication's event name: "message" unless the
	// publisher named it (PublishEvent).
	Event string
	Data  json.RawMessage
}

// Subscribed describes one successful (re)subscription.
type Subscribed struct {
	Topic  string
	Epoch  string
	Offset uint64
	// Resubscribed is true after a reconnect (or a resubscribe the server
	// advised), false for the first subscription.
	Resubscribed bool
	// Recovered is true when the publications missed while away follow from
	// history: nothing was lost. When a resubscription is not recovered,
	// the gap was outside the server's history: the application must reset
	// its state from Snapshot (or refetch it) before the publications that
	// follow.
	Recovered bool
	// Snapshot is the namespace's snapshot, when it has a provider and the
	// subscription did not recover from history.
	Snapshot json.RawMessage
}

// SubscribeOptions are optional callbacks of a subscription. They run one
// at a time, in order with the handler (see Subscription).
type SubscribeOptions struct {
	// OnSubscribed runs after every successful subscription, before the
	// publications that follow it.
	OnSubscribed func(Subscribed)
	// OnUnsubscribed runs when the server removes the subscription for good
	// (channel.unsubscribed), with its reason.
	OnUnsubscribed func(reason string)
}

// Subscription is a channel subscription that survives reconnects: after
// each reconnect it subscribes again with the position it last delivered,
// so that the server replays exactly the publications missed, and it
// delivers each offset at most once, in order.
//
// The handler and the callbacks run one at a time, never concurrently with
// each other; they may call the subscription's own methods (Position,
// Unsubscribe) and the client's.
type Subscription struct {
	c       *Client
	topic   string
	handler func(Publication)
	opts    SubscribeOptions

	// deliver serialises delivery: the handler and callbacks run with it
	// held, and nothing else (taken before mu).
	deliver sync.Mutex
	// mu guards the state below; it is never held while user code runs, so
	// the handler may call Position and Unsubscribe.
	mu         sync.Mutex
	epoch      string            // guarded by mu: position of the last delivery
	offset     uint64            // guarded by mu
	positioned bool              // guarded by mu
	joining    bool              // guarded by mu: a subscribe call is in flight
	pending    []*protocol.Frame // guarded by mu: messages received while joining
	done       bool              // guarded by mu: unsubscribed
}

// channelState is a client's subscriptions, kept beside the client (the SDK
// builds channels on the client's public API only).
type channelState struct {
	mu   sync.Mutex
	subs map[string]*Subscription // guarded by mu
}

var channelStates sync.Map // *Client → *channelState

func (c *Client) channels() *channelState {
	if v, ok := channelStates.Load(c); ok {
		return v.(*channelState)
	}
	st := &channelState{subs: map[string]*Subscription{}}
	if v, loaded := channelStates.LoadOrStore(c, st); loaded {
		return v.(*channelState)
	}
	c.OnEvent("channel.message", func(f *protocol.Frame) {
		if s := st.get(f.Topic); s != nil {
			s.onMessage(f)
		}
	})
	c.OnEvent("channel.unsubscribed", func(f *protocol.Frame) {
		if s := st.get(f.Topic); s != nil {
			s.onUnsubscribed(f)
		}
	})
	c.OnConnect(func(ctx context.Context, c *Client, reconnected bool) {
		if !reconnected {
			return
		}
		st.mu.Lock()
		subs := make([]*Subscription, 0, len(st.subs))
		for _, s := range st.subs {
			subs = append(subs, s)
		}
		st.mu.Unlock()
		for _, s := range subs {
			s.resubscribe(ctx)
		}
	})
	go func() {
		<-c.Done()
		channelStates.Delete(c)
	}()
	return st
}

func (st *channelState) get(topic string) *Subscription {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.subs[topic]
}

// Subscribe subscribes to topic and calls handler for each publication, in
// offset order, exactly once per offset, on the client's event goroutine
// (see OnEvent: keep it short). The subscription is renewed after every
// reconnect with the last delivered position. A topic can be subscribed
// once per client.
func (c *Client) Subscribe(ctx context.Context, topic string, handler func(Publication)) (*Subscription, error) {
	return c.SubscribeWith(ctx, topic, handler, SubscribeOptions{})
}

// SubscribeWith is Subscribe with callbacks.
func (c *Client) SubscribeWith(ctx context.Context, topic string, handler func(Publication), opts SubscribeOptions) (*Subscription, error) {
	if c == nil {
		return nil, ErrNilClient
	}
	st := c.channels()
	s := &Subscription{c: c, topic: topic, handler: handler, opts: opts}
	st.mu.Lock()
	if st.subs[topic] != nil {
		st.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeConflict, "already subscribed to %q", topic)
	}
	st.subs[topic] = s
	st.mu.Unlock()
	if err := s.subscribe(ctx, false); err != nil {
		st.mu.Lock()
		if st.subs[topic] == s {
			delete(st.subs, topic)
		}
		st.mu.Unlock()
		return nil, err
	}
	return s, nil
}

// Topic returns the subscription's topic.
func (s *Subscription) Topic() string { return s.topic }

// Position returns the position of the last publication delivered (or of
// the subscription, before any).
func (s *Subscription) Position() (epoch string, offset uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch, s.offset
}

// Unsubscribe ends the subscription.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	s.mu.Lock()
	s.done = true
	s.pending = nil
	s.mu.Unlock()
	st := s.c.channels()
	st.mu.Lock()
	if st.subs[s.topic] == s {
		delete(st.subs, s.topic)
	}
	st.mu.Unlock()
	return s.c.Call(ctx, "channel.unsubscribe", protocol.TopicParams{Topic: s.topic}, nil)
}

// subscribe makes one channel.subscribe call, from the last position when
// there is one, and delivers what it returns and what arrived meanwhile.
func (s *Subscription) subscribe(ctx context.Context, resubscribed bool) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	params := protocol.SubscribeParams{Topic: s.topic}
	if s.positioned {
		params.Since = &protocol.StreamPosition{Epoch: s.epoch, Offset: s.offset}
	}
	s.joining = true
	s.pending = nil
	s.mu.Unlock()

	var res protocol.SubscribeResult
	err := s.c.Call(ctx, "channel.subscribe", params, &res)

	// Messages that arrive from here on wait for deliver (onMessage), so
	// they follow what this call returned and what arrived meanwhile.
	s.deliver.Lock()
	defer s.deliver.Unlock()
	s.mu.Lock()
	pending := s.pending
	s.joining, s.pending = false, nil
	if err != nil || s.done {
		s.mu.Unlock()
		return err
	}
	if !res.Recovered {
		s.epoch, s.offset, s.positioned = res.Epoch, res.Offset, true
	}
	s.mu.Unlock()
	if s.opts.OnSubscribed != nil {
		s.opts.OnSubscribed(Subscribed{Topic: s.topic, Epoch: res.Epoch, Offset: res.Offset,
			Resubscribed: resubscribed, Recovered: res.Recovered, Snapshot: res.Snapshot})
	}
	for _, p := range res.Publications {
		s.deliverOne(p.Epoch, p.Offset, p.Event, p.Data)
	}
	if res.Recovered {
		s.mu.Lock()
		s.epoch, s.offset, s.positioned = res.Epoch, max(s.offset, res.Offset), true
		s.mu.Unlock()
	}
	for _, f := range pending {
		s.deliverOne(f.Epoch, f.Offset, f.Name, f.Data)
	}
	return nil
}

// resubscribe renews the subscription on a new connection, retrying
// retryable failures until ctx (the connection's) ends.
func (s *Subscription) resubscribe(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		err := s.subscribe(ctx, true)
		if err == nil || ctx.Err() != nil {
			return
		}
		var pe *protocol.Error
		if errors.As(err, &pe) && !pe.Retryable && pe.Code != protocol.CodeConflict {
			s.c.log.Warn("resubscribe failed", "topic", s.topic, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(attempt, 20)) * 50 * time.Millisecond):
		}
	}
}

// deliverOne calls the handler with one publication unless it is of
// another stream life (the server reset it), already delivered, or the
// subscription ended. The caller holds s.deliver, not s.mu.
func (s *Subscription) deliverOne(epoch string, offset uint64, event string, data json.RawMessage) {
	s.mu.Lock()
	if s.done || epoch != s.epoch || offset <= s.offset {
		s.mu.Unlock()
		return
	}
	s.offset = offset
	s.mu.Unlock()
	s.handler(Publication{Topic: s.topic, Epoch: epoch, Offset: offset, Event: protocol.PublicationEvent(event), Data: data})
}

func (s *Subscription) onMessage(f *protocol.Frame) {
	s.deliver.Lock()
	defer s.deliver.Unlock()
	s.mu.Lock()
	if s.joining {
		s.pending = append(s.pending, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.deliverOne(f.Epoch, f.Offset, f.Name, f.Data)
}

func (s *Subscription) onUnsubscribed(f *protocol.Frame) {
	var ev protocol.Unsubscribed
	_ = json.Unmarshal(f.Data, &ev)
	if ev.Resubscribe {
		// Not on the event goroutine: the call's response must be read.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s.resubscribe(ctx)
		}()
		return
	}
	st := s.c.channels()
	st.mu.Lock()
	if st.subs[s.topic] == s {
		delete(st.subs, s.topic)
	}
	st.mu.Unlock()
	s.deliver.Lock()
	defer s.deliver.Unlock()
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	if s.opts.OnUnsubscribed != nil {
		s.opts.OnUnsubscribed(ev.Reason)
	}
}

// Publish publishes data (encoded as JSON) to topic and returns the
// publication's position.
func (c *Client) Publish(ctx context.Context, topic string, data any) (epoch string, offset uint64, err error) {
	return c.PublishEvent(ctx, topic, "", data)
}

// PublishEvent is Publish with an event name ("" or "message": the
// default); subscribers see it in Publication.Event, compact clients as
// the message's event (docs/iot.md).
func (c *Client) PublishEvent(ctx context.Context, topic, event string, data any) (epoch string, offset uint64, err error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return "", 0, fmt.Errorf("client: encode data of %s: %w", topic, err)
	}
	var res protocol.PublishResult
	err = c.Call(ctx, "channel.publish", protocol.PublishParams{Topic: topic, Event: event, Data: raw}, &res)
	return res.Epoch, res.Offset, err
}
