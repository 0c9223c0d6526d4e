package cluster

// Subscriptions: the pub/sub connections, their readers and dispatchers,
// gap fills and position checks. See the package doc.
//
// Lock order: psConn.mu is never held while taking sub.mu, nor the other
// way round; sub.mu is held across a fill's Redis round trip and the
// handler calls (that is what keeps one topic's deliveries in order).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/hub"
)

// psConn is one pub/sub connection of a shard: a reader goroutine that
// receives from Redis into a bounded queue, a dispatcher goroutine that
// delivers from it, and a checker goroutine that runs position checks.
type psConn struct {
	b   *Broker // set once
	sh  *shard  // set once
	idx int     // set once

	// psMu guards ps, which readLoop replaces when its connection went
	// silent; Subscribe and Unsubscribe write on ps under psMu, so that a
	// write lands either on the old connection before the replacement
	// subscribed everything again, or on the new one.
	psMu  sync.Mutex
	ps    *redis.PubSub // guarded by psMu; set in start
	queue chan any      // set once: reader → dispatcher (*redis.Message, *redis.Subscription, connLost)
	// ownChannel is this node's channel (set once): its messages go from
	// the reader straight to the NodeHandler (deliverNode).
	ownChannel string
	poke       chan struct{} // set once, cap 1: wakes the checker for urgent checks
	done       chan struct{} // set once, closed by close
	runs       bool          // set once in start

	mu        sync.Mutex
	subs      map[string]*sub          // guarded by mu: by channel name
	waitUnsub map[string]chan struct{} // guarded by mu: unsubscriptions awaiting Redis's confirmation
	urgent    map[*sub]struct{}        // guarded by mu: topics to check at once
}

// sub is this node's subscription to one channel.
type sub struct {
	topic   string        // set once ("" for the node channel)
	channel string        // set once
	node    bool          // set once: the node's own channel (Directory)
	ready   chan struct{} // set once, closed once positioned or failed

	mu         sync.Mutex // held while delivering; see the lock order above
	err        error      // guarded by mu: positioning failed (then ready is closed)
	positioned bool       // guarded by mu
	removed    bool       // guarded by mu: unsubscribed; deliver nothing more
	epoch      string     // guarded by mu: epoch of the last delivery
	last       uint64     // guarded by mu: offset of the last delivery
	seenEpoch  string     // guarded by mu: what the previous periodic check saw in Redis
	seen       uint64     // guarded by mu
}

func newPSConn(b *Broker, sh *shard, idx int) *psConn {
	return &psConn{
		b: b, sh: sh, idx: idx,
		queue:      make(chan any, b.cfg.QueueSize),
		ownChannel: b.nodeChannel(b.cfg.NodeID),
		poke:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		subs:       make(map[string]*sub),
		waitUnsub:  make(map[string]chan struct{}),
		urgent:     make(map[*sub]struct{}),
	}
}

// start opens the connection lazily (go-redis dials on first use) and
// starts its goroutines, owned by the broker's wait group.
func (c *psConn) start() {
	c.psMu.Lock()
	c.ps = c.sh.client.Subscribe(context.Background())
	c.psMu.Unlock()
	c.runs = true
	c.b.wg.Add(3)
	go func() { defer c.b.wg.Done(); c.readLoop() }()
	go func() { defer c.b.wg.Done(); c.dispatchLoop() }()
	go func() { defer c.b.wg.Done(); c.checkLoop() }()
}

func (c *psConn) close() {
	close(c.done)
	c.psMu.Lock()
	defer c.psMu.Unlock()
	if c.ps != nil {
		_ = c.ps.Close()
	}
}

func (c *psConn) pubsub() *redis.PubSub {
	c.psMu.Lock()
	defer c.psMu.Unlock()
	return c.ps
}

// replace drops a connection that went silent (half-open: no error ever
// comes) for a new one subscribed to every channel of c. The confirmations
// that follow make the dispatcher check each topic, as after any reconnect.
func (c *psConn) replace() {
	c.psMu.Lock()
	defer c.psMu.Unlock()
	if c.closing() {
		return
	}
	old := c.ps
	c.ps = c.sh.client.Subscribe(context.Background())
	c.mu.Lock()
	channels := make([]string, 0, len(c.subs))
	for ch := range c.subs {
		channels = append(channels, ch)
	}
	c.mu.Unlock()
	if len(channels) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		// On failure go-redis keeps the channels and subscribes them as it
		// reconnects on the next receive.
		_ = c.ps.Subscribe(ctx, channels...)
		cancel()
	}
	_ = old.Close()
}

func (c *psConn) closing() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// readLoop receives from Redis. go-redis reconnects a broken connection on
// the next receive and resubscribes its channels; each resubscription's
// confirmation makes the dispatcher check its topic (resubscribed). A
// connection silent for PubSubPing is pinged; silent for another
// PubSubPing after the ping, it is taken as dead (half-open: the network
// dropped it without a reset) and replaced.
func (c *psConn) readLoop() {
	ctx := context.Background()
	backoff := 10 * time.Millisecond
	pinged := false
	failures := 0 // errors since the last message: logged once per outage
	for {
		ps := c.pubsub()
		msg, err := ps.ReceiveTimeout(ctx, c.b.cfg.PubSubPing)
		if c.closing() {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if pinged {
					c.b.stats.receiveErrors.Add(1)
					c.b.log.Warn("redis pub/sub connection silent after a ping: replacing it", "shard", c.sh.idx, "conn", c.idx)
					c.connLost()
					c.replace()
					pinged = false
					continue
				}
				_ = ps.Ping(ctx)
				pinged = true
				continue
			}
			pinged = false
			c.b.stats.receiveErrors.Add(1)
			c.connLost()
			if failures == 0 {
				c.b.log.Warn("redis pub/sub receive failed; reconnecting", "shard", c.sh.idx, "conn", c.idx, "err", err)
			}
			failures++
			select {
			case <-c.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		pinged = false
		if failures > 0 {
			c.b.log.Info("redis pub/sub receiving again", "shard", c.sh.idx, "conn", c.idx, "errors", failures)
			failures = 0
		}
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel == c.ownChannel {
				c.deliverNode(m)
				continue
			}
			select {
			case c.queue <- m:
			default:
				// The queue is full: drop, and check the topic at once.
				// The gap is filled from the stream like any other.
				c.b.stats.dropped.Add(1)
				c.mu.Lock()
				if s := c.subs[m.Channel]; s != nil && !s.node {
					c.urgent[s] = struct{}{}
				}
				c.mu.Unlock()
				c.wake()
			}
		case *redis.Subscription:
			select { // confirmations are never dropped
			case c.queue <- m:
			case <-c.done:
				return
			}
		}
	}
}

// connLost is queued behind what the reader received before its
// connection broke: the dispatcher then marks this node's channel down
// (when this connection carries it) after every earlier confirmation.
type connLost struct{}

// connLost tells the dispatcher that the connection broke: until Redis
// confirms the resubscriptions, nothing published on its channels arrives.
func (c *psConn) connLost() {
	select { // like confirmations, never dropped
	case c.queue <- connLost{}:
	case <-c.done:
	}
}

// nodeSub returns the node channel's subscription when c carries it.
func (c *psConn) nodeSub() *sub {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.subs[c.b.nodeChannel(c.b.cfg.NodeID)]; s != nil && s.node {
		return s
	}
	return nil
}

// nodeRx is the state of this node's channel subscription: whether Redis
// confirmed it on the current connection, and how many times it did (each
// one after the first a resubscription: node messages published while the
// connection was down are lost).
type nodeRx struct {
	mu  sync.Mutex
	ok  bool   // guarded by mu
	gen uint64 // guarded by mu
}

func (r *nodeRx) up() {
	r.mu.Lock()
	r.ok = true
	r.gen++
	r.mu.Unlock()
}

func (r *nodeRx) down() {
	r.mu.Lock()
	r.ok = false
	r.mu.Unlock()
}

// Receiving implements hub.NodeReceiver: whether this node's channel is
// subscribed now, and a generation that changes whenever it was
// subscribed again (node messages sent to this node in between were lost).
func (b *Broker) Receiving() (gen uint64, ok bool) {
	b.rx.mu.Lock()
	defer b.rx.mu.Unlock()
	return b.rx.gen, b.rx.ok
}

func (c *psConn) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

func (c *psConn) dispatchLoop() {
	for {
		select {
		case <-c.done:
			return
		case m := <-c.queue:
			switch m := m.(type) {
			case *redis.Message:
				c.dispatchMessage(m)
			case *redis.Subscription:
				c.dispatchSubscription(m)
			case connLost:
				if s := c.nodeSub(); s != nil {
					c.b.rx.down()
				}
			}
		}
	}
}

func (c *psConn) lookup(channel string) *sub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[channel]
}

func (c *psConn) dispatchSubscription(m *redis.Subscription) {
	switch m.Kind {
	case "subscribe":
		s := c.lookup(m.Channel)
		if s == nil {
			return
		}
		if s.node {
			c.b.rx.up()
			s.markReady(nil)
			return
		}
		s.mu.Lock()
		positioned := s.positioned
		s.mu.Unlock()
		if !positioned {
			c.position(s)
			return
		}
		// A resubscription after go-redis reconnected: publications may
		// have been lost meanwhile.
		c.b.stats.resubscribed.Add(1)
		c.mu.Lock()
		c.urgent[s] = struct{}{}
		c.mu.Unlock()
		c.wake()
	case "unsubscribe":
		c.mu.Lock()
		if w := c.waitUnsub[m.Channel]; w != nil {
			close(w)
			delete(c.waitUnsub, m.Channel)
		}
		c.mu.Unlock()
	}
}

// position reads a newly confirmed subscription's position: publications
// after it arrive on the subscription, those up to it are not this
// subscription's.
func (c *psConn) position(s *sub) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	pos, _, _, err := c.b.read(ctx, s.topic, 0, 0, 0)
	s.mu.Lock()
	if err == nil {
		s.positioned = true
		s.epoch, s.last = pos.Epoch, pos.Offset
		s.seenEpoch, s.seen = pos.Epoch, pos.Offset
	} else {
		s.err = err
	}
	s.mu.Unlock()
	s.markReady(err)
}

func (s *sub) markReady(err error) {
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
}

func (c *psConn) dispatchMessage(m *redis.Message) {
	s := c.lookup(m.Channel)
	if s == nil {
		return
	}
	if s.node {
		c.deliverNode(m) // not reached: the reader delivers them
		return
	}
	pub, err := parseMessage(m.Payload)
	if err != nil {
		c.b.log.Warn("redis publication", "topic", s.topic, "err", err)
		return
	}
	s.mu.Lock()
	err = c.b.catchUpLocked(s, pub.Epoch, pub.Offset, &pub)
	s.mu.Unlock()
	if err != nil {
		c.retry(s)
		c.wake()
	}
}

// deliverNode hands a message of this node's channel to the NodeHandler.
// The reader calls it itself, in arrival order: a node message needs no
// fill and hub.NodeHandler does not block, so it skips the queue and the
// dispatcher (a hand-off per message), never waits behind a topic's fill,
// and is never dropped by a full queue. (Subscription confirmations still
// go through the queue: a message may be handled before the confirmation
// of the subscription it came on marks the channel up, which changes
// nothing for it.)
func (c *psConn) deliverNode(m *redis.Message) {
	if hb := c.b.nodes.Load(); hb != nil {
		hb.h.HandleNodeMessage(json.RawMessage(m.Payload))
	}
}

// retry makes the checker try s again, at its next run (a wake, or the
// next tick).
func (c *psConn) retry(s *sub) {
	c.mu.Lock()
	if c.subs[s.channel] == s {
		c.urgent[s] = struct{}{}
	}
	c.mu.Unlock()
}

// catchUpLocked brings s to {epoch, to}: it delivers, in order, the
// publications after s's last delivery up to offset to, read from the
// stream, then pub (offset to) when given. When the stream no longer holds
// them it delivers a reset marker instead (see the package doc). When
// Redis cannot be read it delivers nothing and returns the error: the
// caller retries later (pub, if any, is in the stream or will be reset).
func (b *Broker) catchUpLocked(s *sub, epoch string, to uint64, pub *hub.Publication) error {
	if !s.positioned || s.removed {
		return nil
	}
	if epoch == s.epoch && to <= s.last {
		return nil // delivered already
	}
	hb := b.pubs.Load()
	if hb == nil {
		return nil
	}
	from := uint64(1)
	if epoch == s.epoch {
		from = s.last + 1
	}
	end := to
	if pub != nil {
		end = to - 1
	}
	reset := false
	if end >= from {
		missed, err := b.fetch(s.topic, epoch, from, end)
		if err != nil {
			b.log.Warn("redis broker: fill", "topic", s.topic, "err", err)
			return err
		}
		if missed != nil {
			for _, p := range missed {
				hb.h.HandlePublication(s.topic, p)
			}
			b.stats.filled.Add(uint64(len(missed)))
			b.stats.delivered.Add(uint64(len(missed)))
		} else {
			hb.h.HandlePublication(s.topic, hub.Publication{Offset: end})
			b.stats.resets.Add(1)
			b.log.Warn("redis broker: publications lost, subscribers reset", "topic", s.topic, "epoch", epoch, "from", from, "to", end)
			reset = true
		}
	}
	if pub != nil {
		hb.h.HandlePublication(s.topic, *pub)
		b.stats.delivered.Add(1)
	}
	if !reset && s.epoch != "" && epoch != s.epoch {
		// A new epoch after one this node delivered (Redis lost the
		// topic): the hub resets the topic's subscribers on its first
		// publication. Counted and logged like any reset.
		b.stats.resets.Add(1)
		b.log.Warn("redis broker: new epoch (Redis lost the topic), subscribers reset", "topic", s.topic, "epoch", s.epoch, "new", epoch)
	}
	s.epoch, s.last = epoch, to
	return nil
}

// fetch reads offsets from..to of topic's stream in epoch, or nil when the
// stream does not hold all of them.
func (b *Broker) fetch(topic, epoch string, from, to uint64) ([]hub.Publication, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	pos, _, pubs, err := b.read(ctx, topic, from, to, 0)
	if err != nil {
		return nil, err
	}
	if pos.Epoch != epoch || uint64(len(pubs)) != to-from+1 {
		return nil, nil
	}
	for i, p := range pubs {
		if p.Offset != from+uint64(i) {
			return nil, nil
		}
	}
	return pubs, nil
}

// checkLoop runs the periodic position check of every subscribed topic,
// and at once the urgent ones (after a resubscription or an overflow).
func (c *psConn) checkLoop() {
	t := time.NewTicker(c.b.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.poke:
			c.check(c.takeUrgent(), true)
		case <-t.C:
			// Urgent checks that failed are retried at each tick.
			c.check(c.takeUrgent(), true)
			c.mu.Lock()
			list := make([]*sub, 0, len(c.subs))
			for _, s := range c.subs {
				if !s.node {
					list = append(list, s)
				}
			}
			c.mu.Unlock()
			c.check(list, false)
		}
	}
}

func (c *psConn) takeUrgent() []*sub {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := make([]*sub, 0, len(c.urgent))
	for s := range c.urgent {
		list = append(list, s)
	}
	clear(c.urgent)
	return list
}

// check compares subscribed topics with their positions in Redis. An urgent
// check catches up at once; the periodic one catches up only with what the
// previous check already saw (publications in flight on the subscription
// are not gaps). It also keeps the topics' meta from expiring while
// subscribed.
func (c *psConn) check(list []*sub, urgent bool) {
	const batch = 256
	for len(list) > 0 {
		if c.closing() {
			return
		}
		n := min(batch, len(list))
		part := list[:n]
		list = list[n:]
		// What each topic had delivered before the positions are read:
		// Redis's offset can only be behind it if Redis lost writes.
		type delivered struct {
			epoch string
			last  uint64
		}
		before := make([]delivered, len(part))
		for i, s := range part {
			s.mu.Lock()
			before[i] = delivered{s.epoch, s.last}
			s.mu.Unlock()
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		pipe := c.sh.client.Pipeline()
		cmds := make([]*redis.SliceCmd, len(part))
		for i, s := range part {
			cmds[i] = pipe.HMGet(ctx, c.b.metaKey(s.topic), "e", "o")
			pipe.PExpire(ctx, c.b.metaKey(s.topic), c.b.cfg.StreamTTL)
		}
		_, err := pipe.Exec(ctx)
		cancel()
		if err != nil && !errors.Is(err, redis.Nil) {
			c.b.log.Warn("redis broker: position check", "shard", c.sh.idx, "err", err)
			if urgent { // try again at the next tick
				for _, s := range part {
					c.retry(s)
				}
			}
			continue
		}
		for i, s := range part {
			vals := cmds[i].Val()
			epoch, _ := vals[0].(string)
			offStr, _ := vals[1].(string)
			var off uint64
			fmt.Sscan(offStr, &off)
			c.b.stats.checks.Add(1)
			if epoch == "" {
				// No meta: Redis lost the topic and nothing was published
				// since. The next publication starts a new epoch, which
				// resets subscribers; positions held by clients are stale
				// already (History answers hub.ErrHistoryGap).
				continue
			}
			if epoch == before[i].epoch && off < before[i].last {
				if err := c.b.rollback(s, epoch, before[i].last, off); err != nil {
					c.retry(s)
				}
				continue
			}
			s.mu.Lock()
			var err error
			switch {
			case urgent:
				err = c.b.catchUpLocked(s, epoch, off, nil)
			case epoch == s.seenEpoch && (epoch != s.epoch || s.seen > s.last):
				err = c.b.catchUpLocked(s, epoch, off, nil)
			}
			s.seenEpoch, s.seen = epoch, off
			s.mu.Unlock()
			if err != nil {
				c.retry(s)
			}
		}
	}
}

// rollback handles a topic whose offset in Redis (off) is behind what this
// node delivered (last) in the same epoch: it starts a new epoch (unless
// another node did already), and resets this node's subscribers at once.
// Every position in the old epoch is then stale: clients resume with
// recovered: false rather than read other publications under offsets they
// have seen.
func (b *Broker) rollback(s *sub, epoch string, last, off uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	err := scriptRollback.Run(ctx, b.shardOf(s.topic).client,
		[]string{b.metaKey(s.topic), b.streamKey(s.topic)},
		epoch, last, newEpoch(), ms(b.cfg.StreamTTL)).Err()
	if err != nil {
		b.log.Warn("redis broker: new epoch after a rollback", "topic", s.topic, "err", err)
		return err
	}
	b.log.Warn("redis broker: offset went backwards (Redis lost writes): new epoch", "topic", s.topic,
		"epoch", epoch, "delivered", last, "redis", off)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed || s.epoch != epoch {
		return nil
	}
	if hb := b.pubs.Load(); hb != nil {
		hb.h.HandlePublication(s.topic, hub.Publication{Offset: last})
		b.stats.resets.Add(1)
	}
	// Whatever epoch comes next is new to this subscription.
	s.epoch, s.last = "", 0
	return nil
}

// Subscribe implements hub.Streams. It returns once Redis confirmed the
// subscription and the topic's position is read.
func (b *Broker) Subscribe(ctx context.Context, topic string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	c := b.connOf(topic)
	if !c.runs {
		return errors.New("cluster: Subscribe before Start")
	}
	return c.subscribe(ctx, &sub{topic: topic, channel: b.channel(topic), ready: make(chan struct{})})
}

func (c *psConn) subscribe(ctx context.Context, s *sub) error {
	c.mu.Lock()
	if old := c.subs[s.channel]; old != nil {
		c.mu.Unlock()
		return old.wait(ctx, c)
	}
	c.subs[s.channel] = s
	c.mu.Unlock()
	// When the write fails, go-redis still resubscribes the channel as it
	// reconnects: the confirmation then positions it.
	c.psMu.Lock()
	_ = c.ps.Subscribe(ctx, s.channel)
	c.psMu.Unlock()
	if err := s.wait(ctx, c); err != nil {
		c.unsubscribe(s.channel, false)
		return err
	}
	return nil
}

func (s *sub) wait(ctx context.Context, c *psConn) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	select {
	case <-s.ready:
	case <-c.done:
		return hub.ErrBrokerClosed
	case <-ctx.Done():
		return fmt.Errorf("cluster: subscribe %q: redis did not confirm: %w", s.channel, ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("cluster: subscribe %q: %w", s.channel, s.err)
	}
	return nil
}

// Unsubscribe implements hub.Streams.
func (b *Broker) Unsubscribe(ctx context.Context, topic string) error {
	c := b.connOf(topic)
	if !c.runs || b.closed.Load() {
		return nil
	}
	c.unsubscribe(b.channel(topic), true)
	return nil
}

// unsubscribe removes the channel's subscription and, with wait, waits
// (boundedly) for Redis's confirmation, so that a later Subscribe of the
// channel never takes an older confirmation for its own.
func (c *psConn) unsubscribe(channel string, wait bool) {
	c.mu.Lock()
	s := c.subs[channel]
	if s == nil {
		c.mu.Unlock()
		return
	}
	delete(c.subs, channel)
	delete(c.urgent, s)
	w := make(chan struct{})
	if old := c.waitUnsub[channel]; old != nil {
		close(old)
	}
	c.waitUnsub[channel] = w
	c.mu.Unlock()
	s.mu.Lock()
	s.removed = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c.psMu.Lock()
	err := c.ps.Unsubscribe(ctx, channel)
	c.psMu.Unlock()
	if err != nil || !wait {
		return // go-redis forgot the channel: a reconnect does not resubscribe it
	}
	select {
	case <-w:
	case <-c.done:
	case <-ctx.Done():
	}
}
