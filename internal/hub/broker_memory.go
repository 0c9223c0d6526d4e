package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	_ Streams   = (*MemoryBroker)(nil)
	_ Presence  = (*MemoryBroker)(nil)
	_ Directory = (*MemoryBroker)(nil)
)

const memShards = 64

// MemoryBroker is the single-node broker: Streams, Presence and Directory
// in this process's memory (idempotency records are MemoryRecords).
// Publications are delivered in offset order by one deliverer per topic at a
// time, outside the topic's lock (see Publish); node messages to this node
// synchronously.
//
// Memory is bounded by what is retained: a topic's history holds at most its
// HistorySize publications and expires HistoryTTL after the last one; idle
// topics with no history and no subscription are forgotten by a sweep
// (their next publication starts a new epoch; Start runs it); presence
// entries and device leases expire with their ttl.
type MemoryBroker struct {
	nodeID string
	now    func() time.Time
	seed   maphash.Seed

	handler atomic.Pointer[pubHandlerBox]  // set once by Deliver
	nodes   atomic.Pointer[nodeHandlerBox] // set once by Receive
	started atomic.Bool
	closed  atomic.Bool
	stop    chan struct{}
	// lifeMu orders Close against the start of a background deliverer, so
	// that wg.Add never races wg.Wait (leaf).
	lifeMu sync.Mutex
	wg     sync.WaitGroup // the sweep and the background deliverers

	topics [memShards]topicShard

	// pubIdem holds the idempotency records of publications (PublishIdem),
	// by topic and key; it is only used under the topic's lock, which
	// makes the check and the record one step with the offset.
	pubIdem *MemoryRecords // set once

	mu         sync.Mutex
	devices    map[string]lease                    // guarded by mu
	devGen     uint64                              // guarded by mu: the last claim's generation
	leaseNodes []string                            // guarded by mu: node ids by lease.node (0 is "", a cleared claim)
	nodeIdx    map[string]uint32                   // guarded by mu: the index in leaseNodes of each node id
	presence   map[string]map[string]presenceEntry // guarded by mu: topic → client → entry
}

type pubHandlerBox struct{ h PublicationHandler }

type nodeHandlerBox struct{ h NodeHandler }

type topicShard struct {
	mu     sync.Mutex
	topics map[string]*memTopic // guarded by mu
}

// maxQueued bounds a topic's publications assigned an offset but not yet
// handed to the handler: a publisher that finds this many waits for the
// deliverer to take them (the only case where Publish waits for a fan-out).
const maxQueued = 4096

// keepQueued is the largest queue array a topic keeps for reuse once
// delivered; a larger one (after a burst) goes back to the collector.
const keepQueued = 256

type memTopic struct {
	// mu is held while an offset is assigned and the publication appended
	// to history and to queue, never while the handler runs: a publish does
	// not wait for a fan-out in progress on the same topic.
	mu         sync.Mutex
	epoch      string        // guarded by mu
	offset     uint64        // guarded by mu
	hist       []Publication // guarded by mu: oldest first
	histTTL    time.Duration // guarded by mu
	lastPub    time.Time     // guarded by mu
	subscribed bool          // guarded by mu: this node receives its publications
	// forgotten is set by sweep when it removes the topic from its shard:
	// whoever still holds the pointer must look the topic up again, or a
	// Subscribe or Publish would land on a topic nobody sees any more.
	forgotten bool // guarded by mu

	// The sequencer. The publisher that finds delivering false sets it
	// and becomes the topic's only deliverer: it hands its own publication
	// to the handler outside mu, then, if others were queued meanwhile,
	// passes the queue on to a background deliverer (drain), so that one
	// publish waits for at most its own fan-out. Whoever delivers takes
	// the whole queue under mu and hands it over in offset order outside
	// it; it clears delivering when it finds the queue empty. So queue is
	// non-empty only while delivering, and publications reach the handler
	// in offset order, one at a time.
	delivering bool          // guarded by mu
	queue      []Publication // guarded by mu: offsets assigned, not yet delivered, in order
	spare      []Publication // guarded by mu: an emptied queue array for reuse
	waiters    int           // guarded by mu: publishers waiting in full (maxQueued)
	full       sync.Cond     // L is mu; broadcast when the deliverer takes the queue
}

// lease is a device's claim; node 0 ("") is the tombstone of a cleared
// claim, kept until the claim's expiry so that an older refresh cannot
// recreate it. Every connected device has one: the node is an index into
// MemoryBroker.leaseNodes (a memory broker sees its own node's id, and in tests a
// few others) held in the low 16 bits of the word whose high 48 hold the
// generation (2^48 claims: ~900 years at 10,000 a second), and the expiry
// Unix nanoseconds rather than a time.Time (24 bytes with its location),
// which keeps the map's slots at 32 bytes instead of 64.
type lease struct {
	expires int64  // Unix nanoseconds
	genNode uint64 // the generation << leaseNodeBits | the node's index into MemoryBroker.leaseNodes
}

// leaseNodeBits is how many bits of lease.genNode hold the node's index.
const leaseNodeBits = 16

func newLease(gen uint64, node uint32, expires int64) lease {
	return lease{expires: expires, genNode: gen<<leaseNodeBits | uint64(node)}
}

// gen returns the claim's generation.
func (l lease) gen() uint64 { return l.genNode >> leaseNodeBits }

// node returns the index of the claim's node in MemoryBroker.leaseNodes.
func (l lease) node() uint32 { return uint32(l.genNode & (1<<leaseNodeBits - 1)) }

// errTooManyNodes refuses a claim for a node beyond the 2^16 node ids a
// memory broker's leases can name (it sees its own, and a test a few).
var errTooManyNodes = errors.New("memory broker: too many node ids for device claims")

// nodeLocked returns the index of node id in b.leaseNodes, adding it. Called with
// b.mu held.
func (b *MemoryBroker) nodeLocked(id string) (uint32, error) {
	if i, ok := b.nodeIdx[id]; ok {
		return i, nil
	}
	if len(b.leaseNodes) >= 1<<leaseNodeBits {
		return 0, errTooManyNodes
	}
	i := uint32(len(b.leaseNodes))
	b.leaseNodes = append(b.leaseNodes, id)
	b.nodeIdx[id] = i
	return i, nil
}

// liveAt reports whether the lease has not expired at now.
func (l lease) liveAt(now time.Time) bool { return now.UnixNano() < l.expires }

type presenceEntry struct {
	info    ClientInfo
	expires time.Time
}

// NewMemoryBroker returns a broker for the node nodeID.
func NewMemoryBroker(nodeID string) *MemoryBroker {
	b := &MemoryBroker{
		nodeID:     nodeID,
		now:        time.Now,
		seed:       maphash.MakeSeed(),
		stop:       make(chan struct{}),
		devices:    make(map[string]lease),
		leaseNodes: []string{""},
		nodeIdx:    map[string]uint32{"": 0},
		presence:   make(map[string]map[string]presenceEntry),
		pubIdem:    NewMemoryRecords(memPublishIdemMax, nil),
	}
	for i := range b.topics {
		b.topics[i].topics = make(map[string]*memTopic)
	}
	return b
}

// Broker returns b as a Broker serving streams, presence and the
// directory; the hub adds memory idempotency records unless Records is set.
func (b *MemoryBroker) Broker() Broker {
	return Broker{Streams: b, Presence: b, Directory: b}
}

// Deliver implements Streams.
func (b *MemoryBroker) Deliver(ctx context.Context, h PublicationHandler) error {
	if !b.handler.CompareAndSwap(nil, &pubHandlerBox{h}) {
		return fmt.Errorf("memory broker: Deliver called twice")
	}
	return nil
}

// Receive implements Directory.
func (b *MemoryBroker) Receive(ctx context.Context, h NodeHandler) error {
	if !b.nodes.CompareAndSwap(nil, &nodeHandlerBox{h}) {
		return fmt.Errorf("memory broker: Receive called twice")
	}
	return nil
}

// Start starts the sweep that forgets idle topics, expired presence and
// leases, until ctx ends or Close. A second call is an error.
func (b *MemoryBroker) Start(ctx context.Context) error {
	if !b.started.CompareAndSwap(false, true) {
		return fmt.Errorf("memory broker: Start called twice")
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				b.sweep()
			}
		}
	}()
	return nil
}

// Close stops the sweep, waits for the background deliverers and makes
// every later call fail with ErrBrokerClosed; safe to call twice.
func (b *MemoryBroker) Close() error {
	b.lifeMu.Lock()
	first := b.closed.CompareAndSwap(false, true)
	b.lifeMu.Unlock()
	if first {
		close(b.stop)
		b.wg.Wait()
	}
	return nil
}

func (b *MemoryBroker) shard(topic string) *topicShard {
	return &b.topics[maphash.String(b.seed, topic)%memShards]
}

// lockTopic returns the topic's state locked, creating it (with a fresh
// epoch) if needed. It never returns a topic the sweep has forgotten.
func (b *MemoryBroker) lockTopic(name string) *memTopic {
	s := b.shard(name)
	for {
		s.mu.Lock()
		t := s.topics[name]
		if t == nil {
			t = &memTopic{epoch: randomID(5)}
			t.full.L = &t.mu
			s.topics[name] = t
		}
		s.mu.Unlock()
		t.mu.Lock()
		if !t.forgotten {
			return t
		}
		t.mu.Unlock()
	}
}

// Publish implements Streams. Under the topic's lock it assigns the offset,
// appends to history and queues the publication for delivery; the handler
// runs outside the lock, in offset order (see memTopic). The publisher that
// finds no delivery in progress delivers its own publication before it
// returns; one that finds a delivery in progress returns at once, unless
// maxQueued publications are already waiting.
func (b *MemoryBroker) Publish(ctx context.Context, topic string, data json.RawMessage, opts PublishOptions) (StreamPosition, error) {
	if b.closed.Load() {
		return StreamPosition{}, ErrBrokerClosed
	}
	t := b.lockTopic(topic)
	for len(t.queue) >= maxQueued {
		t.waiters++
		t.full.Wait()
		t.waiters--
		if t.forgotten {
			t.mu.Unlock()
			t = b.lockTopic(topic)
		}
	}
	now := b.now()
	var idemKey string
	if opts.Idem != nil {
		idemKey = topic + "\x00" + opts.Idem.Key
		if body, ok := b.pubIdem.rawLookup(idemKey, now); ok {
			t.mu.Unlock()
			return decodePublishIdem(body, opts.Idem.Fingerprint)
		}
	}
	t.expireLocked(now)
	t.offset++
	pub := Publication{Offset: t.offset, Epoch: t.epoch, Event: opts.Event, Data: data, Info: opts.Info, TimeMs: now.UnixMilli()}
	t.lastPub = now
	if opts.HistorySize > 0 {
		t.histTTL = opts.HistoryTTL
		if len(t.hist) >= opts.HistorySize {
			n := copy(t.hist, t.hist[len(t.hist)-opts.HistorySize+1:])
			clear(t.hist[n:])
			t.hist = t.hist[:n]
		}
		t.hist = append(t.hist, pub)
	} else {
		t.hist = nil
	}
	pos := StreamPosition{Epoch: t.epoch, Offset: t.offset}
	if opts.Idem != nil {
		b.pubIdem.rawStore(idemKey, encodePublishIdem(pos, opts.Idem.Fingerprint), now, opts.Idem.TTL)
	}
	hb := b.handler.Load()
	if !t.subscribed || hb == nil {
		t.mu.Unlock()
		return pos, nil
	}
	if t.delivering {
		t.queue = append(t.queue, pub)
		t.mu.Unlock()
		return pos, nil
	}
	t.delivering = true
	t.mu.Unlock()
	hb.h.HandlePublication(topic, pub)
	t.mu.Lock()
	if len(t.queue) == 0 {
		t.delivering = false
		t.mu.Unlock()
		return pos, nil
	}
	t.mu.Unlock()
	// Publications were queued during this fan-out: a background deliverer
	// takes them on, so that this publisher does not wait for them.
	b.lifeMu.Lock()
	if b.closed.Load() {
		b.lifeMu.Unlock()
		b.drain(t, topic, hb.h)
		return pos, nil
	}
	b.wg.Add(1)
	b.lifeMu.Unlock()
	go func() {
		defer b.wg.Done()
		b.drain(t, topic, hb.h)
	}()
	return pos, nil
}

// memPublishIdemMax bounds the memory broker's publication records: past
// it the oldest are dropped first (a retry of a dropped key publishes again).
const memPublishIdemMax = 65536

// encodePublishIdem is a publication record: fingerprint, epoch, offset.
func encodePublishIdem(pos StreamPosition, fp string) []byte {
	return fmt.Appendf(nil, "%s|%s|%d", fp, pos.Epoch, pos.Offset)
}

// decodePublishIdem answers a repeat from a publication record.
func decodePublishIdem(body []byte, fp string) (StreamPosition, error) {
	var pos StreamPosition
	parts := strings.SplitN(string(body), "|", 3)
	if len(parts) != 3 {
		return pos, fmt.Errorf("memory broker: bad publication record %q", body)
	}
	if parts[0] != fp {
		return pos, ErrIdemConflict
	}
	off, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return pos, fmt.Errorf("memory broker: bad publication record %q", body)
	}
	return StreamPosition{Epoch: parts[1], Offset: off}, nil
}

// drain delivers t's queue in offset order until it finds it empty, then
// ends the delivery. The caller is the topic's deliverer (delivering set).
func (b *MemoryBroker) drain(t *memTopic, topic string, h PublicationHandler) {
	var done []Publication
	for {
		t.mu.Lock()
		if done != nil && t.spare == nil && cap(done) <= keepQueued {
			t.spare = done[:0]
		}
		if len(t.queue) == 0 {
			t.delivering = false
			t.mu.Unlock()
			return
		}
		batch := t.queue
		t.queue, t.spare = t.spare, nil
		if t.waiters > 0 {
			t.full.Broadcast()
		}
		t.mu.Unlock()
		if bh, ok := h.(PublicationBatchHandler); ok {
			for rest := batch; len(rest) > 0; {
				k := min(len(rest), maxHandedOver)
				bh.HandlePublications(topic, rest[:k])
				rest = rest[k:]
			}
		} else {
			for i := range batch {
				h.HandlePublication(topic, batch[i])
			}
		}
		clear(batch)
		done = batch
	}
}

// maxHandedOver is the most publications drain hands a
// PublicationBatchHandler at once. The hub queues them to each subscriber
// together, so this bounds the burst a subscriber's queue takes in one go
// (sequential deliveries let the writers drain it in between: a queue near
// its bound should not overflow for being handed thousands at once), and
// 64 already makes the per-subscriber cost of a fan-out small beside the
// per-frame cost.
const maxHandedOver = 64

// expireLocked drops history older than its ttl.
func (t *memTopic) expireLocked(now time.Time) {
	if len(t.hist) > 0 && t.histTTL > 0 && now.Sub(t.lastPub) > t.histTTL {
		t.hist = nil
	}
}

// Subscribe implements Streams.
func (b *MemoryBroker) Subscribe(ctx context.Context, topic string) error {
	if b.closed.Load() {
		return ErrBrokerClosed
	}
	t := b.lockTopic(topic)
	t.subscribed = true
	t.mu.Unlock()
	return nil
}

// Unsubscribe implements Streams.
func (b *MemoryBroker) Unsubscribe(ctx context.Context, topic string) error {
	s := b.shard(topic)
	s.mu.Lock()
	t := s.topics[topic]
	s.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		t.subscribed = false
		t.mu.Unlock()
	}
	return nil
}

// History implements Streams.
func (b *MemoryBroker) History(ctx context.Context, topic string, since *StreamPosition, limit int) ([]Publication, StreamPosition, error) {
	if b.closed.Load() {
		return nil, StreamPosition{}, ErrBrokerClosed
	}
	t := b.lockTopic(topic)
	defer t.mu.Unlock()
	t.expireLocked(b.now())
	pos := StreamPosition{Epoch: t.epoch, Offset: t.offset}
	var from uint64 // first offset wanted
	if since != nil {
		if since.Epoch != t.epoch || since.Offset > t.offset {
			return nil, pos, ErrHistoryGap
		}
		from = since.Offset + 1
		if from > t.offset {
			return nil, pos, nil // nothing missed
		}
		if len(t.hist) == 0 || t.hist[0].Offset > from {
			return nil, pos, ErrHistoryGap
		}
	}
	var out []Publication
	for _, p := range t.hist {
		if p.Offset < from {
			continue
		}
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, p)
	}
	return out, pos, nil
}

// Position implements Streams.
func (b *MemoryBroker) Position(ctx context.Context, topic string) (StreamPosition, error) {
	if b.closed.Load() {
		return StreamPosition{}, ErrBrokerClosed
	}
	t := b.lockTopic(topic)
	defer t.mu.Unlock()
	return StreamPosition{Epoch: t.epoch, Offset: t.offset}, nil
}

// AddPresence implements Presence.
func (b *MemoryBroker) AddPresence(ctx context.Context, topic, clientID string, info ClientInfo, ttl time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	set := b.presence[topic]
	if set == nil {
		set = make(map[string]presenceEntry)
		b.presence[topic] = set
	}
	set[clientID] = presenceEntry{info: info, expires: b.now().Add(ttl)}
	return nil
}

// RemovePresence implements Presence.
func (b *MemoryBroker) RemovePresence(ctx context.Context, topic, clientID string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if set := b.presence[topic]; set != nil {
		delete(set, clientID)
		if len(set) == 0 {
			delete(b.presence, topic)
		}
	}
	return nil
}

// Presence implements Presence.
func (b *MemoryBroker) Presence(ctx context.Context, topic string) (map[string]ClientInfo, error) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]ClientInfo, len(b.presence[topic]))
	for id, e := range b.presence[topic] {
		if now.Before(e.expires) {
			out[id] = e.info
		}
	}
	return out, nil
}

// ClaimDevice implements Directory.
func (b *MemoryBroker) ClaimDevice(ctx context.Context, deviceID, nodeID string, ttl time.Duration) (uint64, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	node, err := b.nodeLocked(nodeID)
	if err != nil {
		return 0, "", err
	}
	prev := ""
	if l, ok := b.devices[deviceID]; ok && l.liveAt(b.now()) {
		prev = b.leaseNodes[l.node()]
	}
	b.devGen++
	b.devices[deviceID] = newLease(b.devGen, node, b.now().Add(ttl).UnixNano())
	return b.devGen, prev, nil
}

// RefreshDevice implements Directory.
func (b *MemoryBroker) RefreshDevice(ctx context.Context, deviceID, nodeID string, gen uint64, ttl time.Duration) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.devices[deviceID]; ok && l.liveAt(b.now()) && (l.gen() != gen || b.leaseNodes[l.node()] != nodeID) {
		return false, nil
	}
	node, err := b.nodeLocked(nodeID)
	if err != nil {
		return false, err
	}
	b.devices[deviceID] = newLease(gen, node, b.now().Add(ttl).UnixNano())
	return true, nil
}

// ClearDevice implements Directory.
func (b *MemoryBroker) ClearDevice(ctx context.Context, deviceID, nodeID string, gen uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.devices[deviceID]; ok && b.leaseNodes[l.node()] == nodeID && l.gen() == gen {
		b.devices[deviceID] = newLease(gen, 0, l.expires)
	}
	return nil
}

// DeviceNode implements Directory.
func (b *MemoryBroker) DeviceNode(ctx context.Context, deviceID string) (string, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.devices[deviceID]
	if !ok || l.node() == 0 || !l.liveAt(b.now()) {
		return "", false, nil
	}
	return b.leaseNodes[l.node()], true, nil
}

// NodeAlive implements Directory: one node knows only itself.
func (b *MemoryBroker) NodeAlive(ctx context.Context, nodeID string) (bool, error) {
	return nodeID == b.nodeID, nil
}

// SendToNode implements Directory. A single node can only reach itself.
func (b *MemoryBroker) SendToNode(ctx context.Context, nodeID string, msg json.RawMessage) error {
	if b.closed.Load() {
		return ErrBrokerClosed
	}
	if nodeID != b.nodeID {
		return fmt.Errorf("memory broker: node %q is not reachable from %q", nodeID, b.nodeID)
	}
	hb := b.nodes.Load()
	if hb == nil {
		return fmt.Errorf("memory broker: not receiving")
	}
	hb.h.HandleNodeMessage(msg)
	return nil
}

// sweep forgets expired presence, leases and idle topics.
func (b *MemoryBroker) sweep() {
	now := b.now()
	b.mu.Lock()
	for topic, set := range b.presence {
		for id, e := range set {
			if !now.Before(e.expires) {
				delete(set, id)
			}
		}
		if len(set) == 0 {
			delete(b.presence, topic)
		}
	}
	for d, l := range b.devices {
		if !l.liveAt(now) {
			delete(b.devices, d)
		}
	}
	b.mu.Unlock()

	const idle = 5 * time.Minute
	for i := range b.topics {
		s := &b.topics[i]
		s.mu.Lock()
		for name, t := range s.topics {
			t.mu.Lock()
			t.expireLocked(now)
			if !t.subscribed && !t.delivering && len(t.hist) == 0 && now.Sub(t.lastPub) > idle {
				t.forgotten = true
				delete(s.topics, name)
			}
			t.mu.Unlock()
		}
		s.mu.Unlock()
	}
}
