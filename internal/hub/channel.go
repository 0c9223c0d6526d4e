package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/jsonscan"
	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// Channel events sent by the server (see protocol).
const (
	EventChannelMessage      = protocol.EventChannelMessage
	EventChannelJoin         = protocol.EventChannelJoin
	EventChannelLeave        = protocol.EventChannelLeave
	EventChannelUnsubscribed = protocol.EventChannelUnsubscribed
)

// FeatureChannels is the welcome feature announcing channels.
const FeatureChannels = "channels"

// SnapshotProvider returns the current state behind a topic, sent to a
// client when it subscribes (and when it resumes from a position outside
// history), so that the client holds snapshot + stream. It is registered
// by name with RegisterSnapshot and named by NamespaceConfig.Snapshot.
//
// # Contract
//
// The hub joins a client at a position P = {epoch, offset}: the client gets
// the snapshot, then exactly the publications with offsets P+1, P+2, ...
// For that to reconstruct the state with nothing lost or applied twice, the
// snapshot must reflect exactly the publications up to P. A provider
// guarantees it in one of two ways:
//
//  1. It returns the position its data reflects in Snapshot.Position. The
//     usual way: the code that changes the state and publishes the change
//     holds a lock (per resource) across both, and Snapshot reads the state
//     and Hub.Position under the same lock. The position must not be older
//     than the moment Snapshot was called.
//  2. It returns no position. Then a change must become visible to
//     Snapshot only once its publication has returned, and be visible to
//     every Snapshot that starts after its publication returned (again: a
//     lock held across "change and publish" that Snapshot also takes). The
//     hub reads the position before and after Snapshot and retries while
//     it moved; after a few attempts on a very busy topic the subscribe
//     fails with "unavailable" (retryable).
//
// Snapshot runs on the subscribing connection's request goroutine; it may
// do I/O and should honour ctx. It must be safe for concurrent use.
type SnapshotProvider interface {
	Snapshot(ctx context.Context, t Topic) (Snapshot, error)
}

// Snapshot is the state behind a topic; see SnapshotProvider.
type Snapshot struct {
	// Data is compact JSON sent to the client as the result's "snapshot".
	Data json.RawMessage
	// Position, when set, is the stream position Data reflects.
	Position *StreamPosition
}

// SnapshotFunc adapts a function to SnapshotProvider.
type SnapshotFunc func(ctx context.Context, t Topic) (Snapshot, error)

// Snapshot implements SnapshotProvider.
func (f SnapshotFunc) Snapshot(ctx context.Context, t Topic) (Snapshot, error) { return f(ctx, t) }

const (
	chanShards = 64
	// ctlPrefix prefixes the control topic of each topic: presence changes
	// and permission rechecks travel there through the broker, so that every
	// node with subscribers of the topic sees them. '$' is not allowed in
	// client topics.
	ctlPrefix = "$ctl:"
	// snapshotAttempts bounds the position-bracketing retries (see
	// SnapshotProvider).
	snapshotAttempts = 8
)

// channels is the hub's channel state. Lock order: docs/LOCKORDER.md.
type channels struct {
	streams    Streams                     // set once in New (Deps.Broker.Streams)
	batch      BatchPublisher              // set once in New: streams, when it batches (else nil)
	presence   Presence                    // set once in New (Deps.Broker.Presence)
	namespaces map[string]*namespace       // set once in New; snapshot and owner resolved in Start
	snapshots  map[string]SnapshotProvider // filled before Start
	owners     map[string]OwnerLookup      // filled before Start
	seed       maphash.Seed
	shards     [chanShards]chanShard
	metrics    *channelMetrics

	// reloaded replaces namespaces once set (Hub.ReloadNamespaces, reload.go).
	reloaded atomic.Pointer[map[string]*namespace]
}

type chanShard struct {
	mu     sync.RWMutex
	topics map[string]*localTopic // guarded by mu
}

// localTopic is this node's subscribers of one topic.
type localTopic struct {
	name string     // set once
	ns   *namespace // set once
	// subs is copy-on-write: HandlePublication loads it without a lock;
	// writers hold mu and store a new slice.
	subs       atomic.Pointer[[]*subscriber]
	mu         sync.Mutex // serialises membership changes and broker (un)subscription
	subscribed bool       // guarded by mu: the node is subscribed in the broker
	dead       bool       // guarded by mu: removed from its shard; attach must look again
}

// subscriber is one connection's subscription to one topic.
//
// Every subscribed connection holds one, and a fan-out reads one per
// subscriber: the fields it reads (wsc, compact, flags, epoch, after) come
// first, in the first 48 bytes, and the whole fits the 96-byte size class
// (the states in one atomic word, overflow in its padding). TestSubscriberSize
// keeps it there.
type subscriber struct {
	wsc *ws.Conn // set once: conn's transport side, loaded once so that fan-out skips conn
	// compact is conn's compact codec (nil for protocol v1), loaded once
	// for the same reason.
	compact *compactConn

	// flags holds the subscriber's states (subLive, subRemoved, ...) in one
	// atomic word: see the helpers below.
	flags    atomic.Uint32
	overflow bool // guarded by mu: buf exceeded its bound

	// epoch and after are written before subLive is set and read only
	// after it is seen set (or under mu).
	epoch string
	after uint64 // the reply's offset: publications at or below it are not sent

	conn  *Conn      // set once
	ns    *namespace // set once
	topic string     // set once

	mu sync.Mutex
	// buf is guarded by mu: publications (and join/leave events, at offset
	// 0) received while joining, nil when none (a pointer: most joins buffer
	// nothing, and subscriber keeps its size class).
	buf *[]Publication
}

// A subscriber's flags (subscriber.flags). One word instead of an
// atomic.Bool each keeps subscriber in the 96-byte size class.
const (
	// subLive is clear while joining: publications go to buf until the
	// subscribe reply is queued, then goLive flushes buf and sets it.
	subLive uint32 = 1 << iota
	// subRemoved: detached from its topic (or being detached); set once.
	subRemoved
	// subKicked: removed by the server, channel.unsubscribed sent; set once.
	subKicked
	// subInPresence: added to the topic's presence set.
	subInPresence
	// subUnlisted is set, under its topic's lock, when a detach pass took
	// the subscriber out of the topic's list (dropRemovedLocked).
	subUnlisted
)

// live reports whether publications are sent directly (subLive): the
// fan-out's one atomic load per subscriber.
func (s *subscriber) live() bool { return s.flags.Load()&subLive != 0 }

// has reports whether flag f is set.
func (s *subscriber) has(f uint32) bool { return s.flags.Load()&f != 0 }

// gone reports whether the subscriber was removed or kicked.
func (s *subscriber) gone() bool { return s.flags.Load()&(subRemoved|subKicked) != 0 }

// setLiveUnlessGone sets subLive unless the subscriber was removed or
// kicked, in one compare-and-swap: detach and dropSubscriber set their flag
// without s.mu, so a check under s.mu followed by a plain set could leave a
// removed subscriber live (and a fan-out holding an older copy of the
// topic's list would send it a publication). It reports whether it set it.
func (s *subscriber) setLiveUnlessGone() bool {
	for {
		old := s.flags.Load()
		if old&(subRemoved|subKicked) != 0 {
			return false
		}
		if s.flags.CompareAndSwap(old, old|subLive) {
			return true
		}
	}
}

// set sets flag f.
func (s *subscriber) set(f uint32) { s.flags.Or(f) }

// clear clears flag f.
func (s *subscriber) clear(f uint32) { s.flags.And(^f) }

// mark sets flag f and reports whether this call set it (false when it was
// already set): a CompareAndSwap(false, true) of the flag.
func (s *subscriber) mark(f uint32) bool { return s.flags.Or(f)&f == 0 }

// unmark clears flag f and reports whether this call cleared it: a
// CompareAndSwap(true, false) of the flag.
func (s *subscriber) unmark(f uint32) bool { return s.flags.And(^f)&f != 0 }

// connSubs is a connection's subscriptions (Conn.subs). Every subscribed
// connection holds one and most hold a single subscription, so that one is
// kept in one, without a slice (32 bytes in all); two or more live in many.
type connSubs struct {
	mu     sync.Mutex
	closed bool        // guarded by mu
	one    *subscriber // guarded by mu: the subscription while there is exactly one (many is nil)
	many   *subsList   // guarded by mu: two or more subscriptions (one is nil), nil otherwise
}

// subsList is the subscriptions of a connection that holds two or more.
type subsList struct {
	subs  []*subscriber
	index map[string]*subscriber // by topic, kept only beyond indexFrom subscriptions
}

// indexFrom is how many subscriptions a connection has before connSubs
// indexes them by topic: most connections hold a few, and a short slice is
// far smaller than a map.
const indexFrom = 16

// count returns the number of subscriptions. Called with mu held.
func (cs *connSubs) count() int {
	switch {
	case cs.one != nil:
		return 1
	case cs.many != nil:
		return len(cs.many.subs)
	}
	return 0
}

// list returns a copy of the subscriptions. Called with mu held.
func (cs *connSubs) list() []*subscriber {
	switch {
	case cs.one != nil:
		return []*subscriber{cs.one}
	case cs.many != nil:
		return slices.Clone(cs.many.subs)
	}
	return nil
}

// get returns the subscription to topic, or nil. Called with mu held.
func (cs *connSubs) get(topic string) *subscriber {
	if cs.one != nil {
		if cs.one.topic == topic {
			return cs.one
		}
		return nil
	}
	m := cs.many
	if m == nil {
		return nil
	}
	if m.index != nil {
		return m.index[topic]
	}
	for _, s := range m.subs {
		if s.topic == topic {
			return s
		}
	}
	return nil
}

// put adds s, whose topic is not there yet. Called with mu held.
func (cs *connSubs) put(s *subscriber) {
	switch {
	case cs.one == nil && cs.many == nil:
		cs.one = s
		return
	case cs.one != nil:
		cs.many = &subsList{subs: []*subscriber{cs.one, s}}
		cs.one = nil
		return
	}
	m := cs.many
	m.subs = append(m.subs, s)
	switch {
	case m.index != nil:
		m.index[s.topic] = s
	case len(m.subs) > indexFrom:
		m.index = make(map[string]*subscriber, len(m.subs))
		for _, s := range m.subs {
			m.index[s.topic] = s
		}
	}
}

// del removes s. Called with mu held.
func (cs *connSubs) del(s *subscriber) {
	if cs.one != nil {
		if cs.one == s {
			cs.one = nil
		}
		return
	}
	m := cs.many
	if m == nil {
		return
	}
	if i := slices.Index(m.subs, s); i >= 0 {
		m.subs = slices.Delete(m.subs, i, i+1)
	}
	if m.index != nil {
		delete(m.index, s.topic)
		if len(m.subs) <= indexFrom/2 {
			m.index = nil
		}
	}
	if len(m.subs) == 1 {
		cs.one, cs.many = m.subs[0], nil
	}
}

// clear removes and returns all the subscriptions. Called with mu held.
func (cs *connSubs) clear() []*subscriber {
	subs := cs.list()
	cs.one, cs.many = nil, nil
	return subs
}

type controlMessage struct {
	Kind   string      `json:"kind"` // join, leave, recheck
	Client *ClientInfo `json:"client,omitempty"`
}

type channelMetrics struct {
	subscriptions prometheus.Gauge
	publications  prometheus.Counter
	deliveries    prometheus.Counter
	snapRetries   prometheus.Counter
}

func newChannelMetrics(reg prometheus.Registerer) *channelMetrics {
	m := &channelMetrics{
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "junction_channel_subscriptions", Help: "Channel subscriptions of connections on this node.",
		}),
		publications: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_channel_publications_total", Help: "Publications made through this node.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_channel_deliveries_total", Help: "channel.message frames queued to local subscribers.",
		}),
		snapRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_channel_snapshot_retries_total", Help: "Snapshots taken again because the position moved meanwhile.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.subscriptions, m.publications, m.deliveries, m.snapRetries)
	}
	return m
}

// initChannels compiles the namespaces and registers the channel methods.
func (h *Hub) initChannels() error {
	nss, err := compileNamespaces(h.cfg.Namespaces)
	if err != nil {
		return fmt.Errorf("hub config: %w", err)
	}
	cs := &h.ch
	cs.namespaces = nss
	cs.snapshots = map[string]SnapshotProvider{}
	cs.owners = map[string]OwnerLookup{}
	cs.seed = maphash.MakeSeed()
	for i := range cs.shards {
		cs.shards[i].topics = make(map[string]*localTopic)
	}
	cs.streams = h.deps.Broker.Streams
	cs.batch, _ = cs.streams.(BatchPublisher)
	cs.presence = h.deps.Broker.Presence
	cs.metrics = newChannelMetrics(h.deps.Registerer)
	h.registerChannelMethods()
	h.AddFeature(FeatureChannels)
	return nil
}

// RegisterSnapshot registers a snapshot provider under name, for the
// namespaces whose snapshot setting names it. Call before Start.
func (h *Hub) RegisterSnapshot(name string, p SnapshotProvider) {
	if h.started.Load() {
		panic("hub: RegisterSnapshot after Start")
	}
	h.ch.snapshots[name] = p
}

// RegisterOwnerLookup registers the owner lookup used by the "owner" rule of
// the namespaces whose owner setting names it (by default the namespace's
// own name). Call before Start.
func (h *Hub) RegisterOwnerLookup(name string, o OwnerLookup) {
	if h.started.Load() {
		panic("hub: RegisterOwnerLookup after Start")
	}
	h.ch.owners[name] = o
}

// startChannels resolves providers and starts the presence loop; the broker
// already runs (Start).
func (h *Hub) startChannels() error {
	for name, ns := range h.ch.namespaces {
		if ns.cfg.Snapshot != "" {
			p := h.ch.snapshots[ns.cfg.Snapshot]
			if p == nil {
				return fmt.Errorf("hub: namespace %q: no snapshot provider %q registered", name, ns.cfg.Snapshot)
			}
			ns.snapshot = p
		}
		ns.owner = h.ch.owners[ns.cfg.Owner]
	}
	h.Go(func(ctx context.Context) { every(ctx, h.cfg.PresenceTTL/3, h.refreshPresence) })
	if h.uconns.store != nil {
		h.Go(h.runUserConns)
	}
	return nil
}

// The params types of the channel methods: the protocol types, validated here.
type (
	subscribeParams protocol.SubscribeParams
	topicParams     protocol.TopicParams
	publishParams   protocol.PublishParams
	historyParams   protocol.HistoryParams
)

func (p *subscribeParams) Validate() error { return ValidateTopic(p.Topic) }

func (p *topicParams) Validate() error { return ValidateTopic(p.Topic) }

func (p *publishParams) Validate() error {
	if err := ValidateTopic(p.Topic); err != nil {
		return err
	}
	ev, err := protocol.NormalizePublicationEvent(p.Event)
	if err != nil {
		return err
	}
	p.Event = ev
	if len(p.Data) == 0 || string(p.Data) == "null" {
		return protocol.FieldError("data", "required")
	}
	return nil
}

// decodeFast implements fastParams for the shape every client sends:
// topic and data spelled exactly, once each, the topic without escapes, the
// data not null. Data aliases raw, as rpc.call's params do.
func (p *publishParams) decodeFast(raw json.RawMessage) bool {
	i := jsonscan.Space(raw, 0)
	if i >= len(raw) || raw[i] != '{' || !utf8.Valid(raw) { // encoding/json replaces invalid UTF-8
		return false
	}
	seen := 0
	end, ok := jsonscan.Object(raw, i, func(key []byte, v int) (int, bool) {
		switch string(key) {
		case "topic":
			if seen&1 != 0 {
				return 0, false
			}
			seen |= 1
			s, end, ok := jsonscan.SimpleString(raw, v)
			p.Topic = string(s)
			return end, ok
		case "data":
			if seen&2 != 0 || v >= len(raw) || raw[v] == 'n' {
				return 0, false
			}
			seen |= 2
			end, ok := jsonscan.Value(raw, v)
			if !ok {
				return 0, false
			}
			p.Data = raw[v:end:end]
			return end, true
		}
		return 0, false
	})
	return ok && seen == 3 && jsonscan.Space(raw, end) == len(raw)
}

func (p *historyParams) Validate() error {
	if err := ValidateTopic(p.Topic); err != nil {
		return err
	}
	if p.Limit < 0 {
		return protocol.FieldError("limit", "must not be negative")
	}
	return nil
}

func (h *Hub) registerChannelMethods() {
	topic := reflect.TypeFor[protocol.TopicParams]()
	Handle(h, Method{Name: "channel.subscribe", Scope: ScopeAuthenticated, Params: reflect.TypeFor[protocol.SubscribeParams]()},
		func(ctx context.Context, call *Call, p *subscribeParams) (*protocol.SubscribeResult, error) {
			return h.subscribe(ctx, call, p)
		})
	Handle(h, Method{Name: "channel.unsubscribe", Scope: ScopeAuthenticated, Params: topic},
		func(ctx context.Context, call *Call, p *topicParams) (protocol.Empty, error) {
			if cs := connSubsOf(call.Conn); cs != nil {
				if s := cs.take(p.Topic, nil); s != nil {
					h.detach(ctx, s)
				}
			}
			return protocol.Empty{}, nil
		})
	// With idem the result is the first request's, as recorded (JSON).
	Handle(h, Method{Name: "channel.publish", Scope: ScopeAuthenticated, Params: reflect.TypeFor[protocol.PublishParams](), Result: reflect.TypeFor[protocol.PublishResult]()},
		func(ctx context.Context, call *Call, p *publishParams) (any, error) {
			if call.Idem != "" {
				res, err := h.PublishIdempotentEvent(ctx, call.Principal, call.Idem, p.Topic, p.Event, p.Data, clientInfo(call.Conn))
				if err != nil {
					return nil, err
				}
				return res, nil
			}
			pos, err := h.PublishEventAs(ctx, call.Principal, p.Topic, p.Event, p.Data, clientInfo(call.Conn))
			if err != nil {
				return nil, err
			}
			return &protocol.PublishResult{Epoch: pos.Epoch, Offset: pos.Offset}, nil
		})
	Handle(h, Method{Name: "channel.presence", Scope: ScopeAuthenticated, Params: topic},
		func(ctx context.Context, call *Call, p *topicParams) (*protocol.PresenceResult, error) {
			clients, err := h.PresenceAs(ctx, call.Principal, p.Topic)
			if err != nil {
				return nil, err
			}
			return &protocol.PresenceResult{Clients: clients}, nil
		})
	Handle(h, Method{Name: "channel.history", Scope: ScopeAuthenticated, Params: reflect.TypeFor[protocol.HistoryParams]()},
		func(ctx context.Context, call *Call, p *historyParams) (*protocol.HistoryResult, error) {
			res, err := h.HistoryAs(ctx, call.Principal, p.Topic, p.Since, p.Limit)
			if err != nil {
				return nil, err
			}
			return &res, nil
		})
}

// wirePublications returns pubs as a list that encodes as [] when empty
// (the broker's Publication is the wire type).
func wirePublications(pubs []Publication) []protocol.Publication {
	if pubs == nil {
		return []protocol.Publication{}
	}
	return pubs
}

// Publish publishes data (compact JSON) to topic on the server's behalf: the
// topic must match a namespace, no rule is checked. It returns the
// publication's position.
func (h *Hub) Publish(ctx context.Context, topic string, data json.RawMessage) (StreamPosition, error) {
	return h.PublishEvent(ctx, topic, "", data)
}

// PublishEvent is Publish with an event name ("" or "message": the
// default; see protocol.NormalizePublicationEvent).
func (h *Hub) PublishEvent(ctx context.Context, topic, event string, data json.RawMessage) (StreamPosition, error) {
	ns, t, err := h.ch.resolve(topic)
	if err != nil {
		return StreamPosition{}, err
	}
	if event, err = protocol.NormalizePublicationEvent(event); err != nil {
		return StreamPosition{}, err
	}
	return h.publish(ctx, ns, t, event, data, nil, nil)
}

// PublishAs publishes data (compact JSON) to topic as principal p, checking
// the namespace's publish rules: bad_request, not_found or forbidden.
// info describes the publisher in the stored publication (may be nil).
func (h *Hub) PublishAs(ctx context.Context, p *auth.Principal, topic string, data json.RawMessage, info *ClientInfo) (StreamPosition, error) {
	return h.PublishEventAs(ctx, p, topic, "", data, info)
}

// PublishEventAs is PublishAs with an event name ("" or "message": the
// default); a bad name answers bad_request (details.field "event").
func (h *Hub) PublishEventAs(ctx context.Context, p *auth.Principal, topic, event string, data json.RawMessage, info *ClientInfo) (StreamPosition, error) {
	return h.publishEventAs(ctx, p, topic, event, data, info, nil)
}

// publishEventAs is PublishEventAs, idempotent in the broker when idem is set.
func (h *Hub) publishEventAs(ctx context.Context, p *auth.Principal, topic, event string, data json.RawMessage, info *ClientInfo, idem *PublishIdem) (StreamPosition, error) {
	ns, t, err := h.ch.resolve(topic)
	if err != nil {
		return StreamPosition{}, err
	}
	if event, err = protocol.NormalizePublicationEvent(event); err != nil {
		return StreamPosition{}, err
	}
	if err := ns.authorize(ctx, p, t, actPublish); err != nil {
		return StreamPosition{}, err
	}
	if data, err = h.interceptPublish(ctx, p, t, event, data, info); err != nil {
		return StreamPosition{}, err
	}
	return h.publish(ctx, ns, t, event, data, info, idem)
}

// PublishIdempotent is PublishAs run through the idempotency records
// under key (Idempotent): a repeat from the same principal answers the
// first {epoch, offset} and publishes nothing; the same key with another
// topic or data is refused with conflict. It answers the encoded
// PublishResult. REST and WebSocket share the key space.
func (h *Hub) PublishIdempotent(ctx context.Context, p *auth.Principal, key, topic string, data json.RawMessage, info *ClientInfo) (json.RawMessage, error) {
	return h.PublishIdempotentEvent(ctx, p, key, topic, "", data, info)
}

// PublishIdempotentEvent is PublishIdempotent with an event name; the name
// is part of what a repeat must match.
func (h *Hub) PublishIdempotentEvent(ctx context.Context, p *auth.Principal, key, topic, event string, data json.RawMessage, info *ClientInfo) (json.RawMessage, error) {
	if len(data) == 0 {
		return nil, protocol.FieldError("data", "required")
	}
	event, err := protocol.NormalizePublicationEvent(event)
	if err != nil {
		return nil, err
	}
	compact, err := protocol.Compact(data)
	if err != nil {
		return nil, protocol.FieldError("data", "invalid JSON")
	}
	// The default event adds nothing, so that records made before event
	// names existed still match.
	target := []byte(topic)
	if event != "" {
		target = slices.Concat(target, []byte{0, 1}, []byte(event))
	}
	fp := Fingerprint("channel.publish", slices.Concat(target, []byte{0}, compact))
	// The broker records the publication too, atomically with its offset,
	// so that a request run again (its first run's node died before the
	// record above was finished) answers the first offset.
	idem := &PublishIdem{Key: p.Key() + "\x00" + key, Fingerprint: fp, TTL: h.idem.ttl}
	return h.Idempotent(ctx, p.Key(), key, fp, func() (json.RawMessage, error) {
		pos, err := h.publishEventAs(ctx, p, topic, event, data, info, idem)
		if err != nil {
			return nil, err
		}
		return jsonMarshal(protocol.PublishResult{Epoch: pos.Epoch, Offset: pos.Offset})
	})
}

func (h *Hub) publish(ctx context.Context, ns *namespace, t Topic, event string, data json.RawMessage, info *ClientInfo, idem *PublishIdem) (StreamPosition, error) {
	if len(data) == 0 {
		return StreamPosition{}, protocol.FieldError("data", "required")
	}
	pos, err := h.ch.streams.Publish(ctx, t.Name, data, PublishOptions{
		Event: event, HistorySize: ns.cfg.HistorySize, HistoryTTL: ns.cfg.HistoryTTL, Info: info, Idem: idem,
	})
	if errors.Is(err, ErrIdemConflict) {
		return StreamPosition{}, protocol.Errorf(protocol.CodeConflict, "this idempotency key was used for another request")
	}
	if err != nil {
		return StreamPosition{}, fmt.Errorf("publish to %s: %w", t.Name, err)
	}
	h.ch.metrics.publications.Inc()
	return pos, nil
}

// Position returns a topic's current stream position.
func (h *Hub) Position(ctx context.Context, topic string) (StreamPosition, error) {
	if _, _, err := h.ch.resolve(topic); err != nil {
		return StreamPosition{}, err
	}
	return h.ch.streams.Position(ctx, topic)
}

// PresenceAs returns the presence set of topic, for a principal allowed to
// subscribe to it. A namespace without presence answers not_found.
func (h *Hub) PresenceAs(ctx context.Context, p *auth.Principal, topic string) (map[string]protocol.ClientInfo, error) {
	ns, t, err := h.ch.resolve(topic)
	if err != nil {
		return nil, err
	}
	if err := ns.authorize(ctx, p, t, actSubscribe); err != nil {
		return nil, err
	}
	if !ns.cfg.Presence {
		return nil, protocol.Errorf(protocol.CodeNotFound, "presence is not enabled for namespace %q", t.Namespace)
	}
	clients, err := h.ch.presence.Presence(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("presence of %s: %w", topic, err)
	}
	if clients == nil {
		clients = map[string]ClientInfo{}
	}
	return clients, nil
}

// HistoryAs returns retained publications of topic, for a principal allowed
// to subscribe to it. Without since it returns the most recent limit
// publications (all retained when limit is 0), oldest first; with since the
// first limit publications after it. A since position outside history
// answers conflict with the current position in details (epoch, offset).
func (h *Hub) HistoryAs(ctx context.Context, p *auth.Principal, topic string, since *StreamPosition, limit int) (protocol.HistoryResult, error) {
	ns, t, err := h.ch.resolve(topic)
	if err != nil {
		return protocol.HistoryResult{}, err
	}
	if err := ns.authorize(ctx, p, t, actSubscribe); err != nil {
		return protocol.HistoryResult{}, err
	}
	if limit < 0 {
		return protocol.HistoryResult{}, protocol.FieldError("limit", "must not be negative")
	}
	bl := limit
	if since == nil {
		bl = 0
	}
	pubs, pos, err := h.ch.streams.History(ctx, topic, since, bl)
	if errors.Is(err, ErrHistoryGap) {
		return protocol.HistoryResult{}, protocol.Errorf(protocol.CodeConflict, "position is outside the retained history").
			WithDetail("epoch", pos.Epoch).WithDetail("offset", pos.Offset)
	}
	if err != nil {
		return protocol.HistoryResult{}, fmt.Errorf("history of %s: %w", topic, err)
	}
	if since == nil && limit > 0 && len(pubs) > limit {
		pubs = pubs[len(pubs)-limit:]
	}
	return protocol.HistoryResult{Epoch: pos.Epoch, Offset: pos.Offset, Publications: wirePublications(pubs)}, nil
}

// Subscribers returns the number of this node's subscribers of topic.
func (h *Hub) Subscribers(topic string) int {
	lt := h.ch.lookup(topic)
	if lt == nil {
		return 0
	}
	if sp := lt.subs.Load(); sp != nil {
		return len(*sp)
	}
	return 0
}
