package hub

// Delivery of publications to this node's subscribers: topic lookup, the
// fan-out of HandlePublication, and a joining subscriber's buffer.

import (
	"hash/maphash"
	"strings"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

func (cs *channels) shard(topic string) *chanShard {
	return &cs.shards[maphash.String(cs.seed, topic)%chanShards]
}

func (cs *channels) lookup(topic string) *localTopic {
	s := cs.shard(topic)
	s.mu.RLock()
	lt := s.topics[topic]
	s.mu.RUnlock()
	return lt
}

func (cs *channels) getOrCreate(topic string, ns *namespace) *localTopic {
	s := cs.shard(topic)
	s.mu.RLock()
	lt := s.topics[topic]
	s.mu.RUnlock()
	if lt != nil {
		return lt
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lt = s.topics[topic]; lt == nil {
		lt = &localTopic{name: topic, ns: ns}
		s.topics[topic] = lt
	}
	return lt
}

// HandlePublication is the hub's PublicationHandler.HandlePublication: it fans a publication out to
// this node's subscribers of the topic. The frame is encoded once and the
// same bytes are queued to every subscriber; it never blocks (a subscriber
// whose queue overflows is closed with 4108 by the transport).
func (h *Hub) HandlePublication(topic string, pub Publication) {
	if h.deliverHook != nil {
		h.deliverHook(topic, pub)
	}
	if strings.HasPrefix(topic, ctlPrefix) {
		h.handleControl(topic[len(ctlPrefix):], pub.Data)
		return
	}
	if kind, ok := isEventTopic(topic); ok {
		h.handleEvent(kind, pub)
		return
	}
	sp := h.subscribers(topic)
	if sp == nil {
		return
	}
	var pf pubFrames
	var f fanout
	for _, s := range *sp {
		f.deliver(h, s, topic, pub, &pf)
	}
	f.finish(h)
}

// HandlePublications is the hub's PublicationBatchHandler.HandlePublications:
// HandlePublication of each of pubs, in one pass over the topic's
// subscribers. A live subscriber past its join position on the batch's epoch
// (nearly every one) has all the batch's frames queued under one lock of its
// connection: per delivery, a fan-out's cost is mostly the cache misses of
// that lock and queue, which a batch of k publications pays once instead of
// k times. Any other subscriber gets each publication as HandlePublication
// would send it.
//
// One list of subscribers serves the batch, where HandlePublication loads
// it per publication; nobody who joins meanwhile is missed: every offset of
// the batch was assigned before the list was loaded, so a subscriber added
// after it joins at a later position.
func (h *Hub) HandlePublications(topic string, pubs []Publication) {
	_, event := isEventTopic(topic)
	if len(pubs) == 1 || event || h.deliverHook != nil || strings.HasPrefix(topic, ctlPrefix) {
		for i := range pubs {
			h.HandlePublication(topic, pubs[i])
		}
		return
	}
	sp := h.subscribers(topic)
	if sp == nil {
		return
	}
	epoch := pubs[0].Epoch // the epoch of the whole batch, or "" when it changes within it
	for i := range pubs {
		if pubs[i].Epoch != epoch {
			epoch = ""
			break
		}
	}
	first := pubs[0].Offset // offsets rise through the batch
	pfs := make([]pubFrames, len(pubs))
	var frames [][]byte // every publication's frame, in order, once needed
	var f fanout
	for _, s := range *sp {
		if s.compact == nil && s.wsc != nil && s.live() && epoch != "" && s.epoch == epoch && first > s.after {
			if frames == nil {
				frames = make([][]byte, len(pubs))
				for i := range pubs {
					frames[i] = pfs[i].v1(topic, pubs[i])
				}
			}
			k, _ := s.wsc.SendFramesBatch(&f.batch, frames)
			f.sent += k
			f.direct += k
			continue
		}
		for i := range pubs {
			f.deliver(h, s, topic, pubs[i], &pfs[i])
		}
	}
	f.finish(h)
}

// subscribers returns this node's subscribers of topic, nil when none.
func (h *Hub) subscribers(topic string) *[]*subscriber {
	lt := h.ch.lookup(topic)
	if lt == nil {
		return nil
	}
	return lt.subs.Load()
}

// pubFrames is a publication's frames in one fan-out, each encoded the
// first time a subscriber needs it.
type pubFrames struct {
	frame []byte     // protocol v1
	cp    compactPub // the compact form, for compact subscribers
}

// v1 returns pub's protocol v1 frame.
func (pf *pubFrames) v1(topic string, pub Publication) []byte {
	if pf.frame == nil {
		pf.frame = ws.PrepareText(protocol.AppendPublication(nil, topic, pub.Epoch, pub.Offset, pub.Event, pub.Data))
	}
	return pf.frame
}

// fanout is one fan-out in progress: the connections it made ready, and
// its counts, added to the metrics once at the end (one contended atomic
// each rather than one per delivery).
type fanout struct {
	batch  ws.Batch
	sent   int // deliveries
	direct int // of them, frames queued to a connection in batch (framesOut)
}

// deliver sends pub to subscriber s, or buffers it while s joins.
func (f *fanout) deliver(h *Hub, s *subscriber, topic string, pub Publication, pf *pubFrames) {
	var sent, batched bool
	switch {
	case !s.live():
		sent = s.deliverJoining(pub)
	case pub.Epoch != s.epoch:
		h.dropSubscriber(s, "reset", true)
	case pub.Offset <= s.after:
		// already in the subscriber's snapshot or history
	case s.compact != nil:
		sent, batched = s.deliverCompact(topic, pub, &pf.cp, &f.batch)
	case s.wsc != nil:
		sent = s.wsc.SendBatch(&f.batch, pf.v1(topic, pub)) == nil
		batched = sent
	}
	if sent {
		f.sent++
	}
	if batched {
		f.direct++
	}
}

// finish hands the connections made ready to the writers and counts the
// fan-out.
func (f *fanout) finish(h *Hub) {
	f.batch.Flush()
	if f.direct > 0 {
		h.metrics.framesOut.Add(float64(f.direct))
	}
	h.ch.metrics.deliveries.Add(float64(f.sent))
}

// deliverJoining buffers a publication for a joining subscriber, or sends it
// when the subscriber went live meanwhile. It reports whether it was sent.
func (s *subscriber) deliverJoining(pub Publication) bool {
	sent, reset := s.joiningLocked(pub)
	if reset {
		// Went live meanwhile, on a stream reset since: as on the live
		// path, the client must resubscribe.
		s.conn.hub.dropSubscriber(s, "reset", true)
	}
	return sent
}

func (s *subscriber) joiningLocked(pub Publication) (sent, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone() {
		return false, false
	}
	if s.live() {
		if pub.Epoch != s.epoch {
			return false, true
		}
		return s.sendLocked(pub), false
	}
	if s.bufLen() >= s.conn.hub.cfg.MaxQueueFrames {
		s.overflow = true
		s.buf = nil
		return false, false
	}
	s.buffer(pub)
	return false, false
}

// bufLen returns the number of publications buffered while joining. Called
// with s.mu held.
func (s *subscriber) bufLen() int {
	if s.buf == nil {
		return 0
	}
	return len(*s.buf)
}

// buffer appends pub to the join buffer. Called with s.mu held.
func (s *subscriber) buffer(pub Publication) {
	if s.buf == nil {
		s.buf = new([]Publication)
	}
	*s.buf = append(*s.buf, pub)
}

func (s *subscriber) sendLocked(pub Publication) bool {
	if pub.Epoch != s.epoch || pub.Offset <= s.after {
		return false
	}
	return s.conn.sendFrame(ws.PrepareText(protocol.AppendPublication(nil, s.topic, pub.Epoch, pub.Offset, pub.Event, pub.Data)))
}

// deliverEventJoining buffers a prepared join or leave event for a joining
// subscriber, or sends it when the subscriber went live meanwhile: a client
// sees the presence changes that follow its subscribe reply even when they
// reach the node before goLive runs. The event waits in buf as a
// Publication at offset 0, which no stream uses.
func (s *subscriber) deliverEventJoining(frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone() {
		return
	}
	if s.live() {
		s.conn.SendPrepared(frame)
		return
	}
	if s.bufLen() >= s.conn.hub.cfg.MaxQueueFrames {
		s.overflow = true
		s.buf = nil
		return
	}
	s.buffer(Publication{Data: frame})
}

// ready records the position the subscriber joins at. It fails when the
// join buffer overflowed.
func (s *subscriber) ready(pos StreamPosition) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.overflow {
		return false
	}
	s.epoch, s.after = pos.Epoch, pos.Offset
	return true
}

// goLive runs once the subscribe reply is queued: it sends the publications
// buffered while joining that follow the reply's position, then lets
// HandlePublication send directly. When the stream was reset (a new epoch)
// after the position the reply carries, the buffered publications cannot
// follow it: the client is told to resubscribe (channel.unsubscribed,
// reason "reset"), as a live subscriber is, rather than losing them.
func (s *subscriber) goLive() {
	if s.flushJoined() {
		s.conn.hub.dropSubscriber(s, "reset", true)
	}
}

// flushJoined is goLive under s.mu; it reports whether the stream was reset
// after the join position.
func (s *subscriber) flushJoined() (reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone() {
		s.buf = nil
		return false
	}
	if s.overflow {
		s.conn.Close(protocol.CloseSlowConsumer, protocol.CloseReason(protocol.CloseSlowConsumer))
		return false
	}
	// Buffered publications arrive in the topic's order. One of another
	// epoch before the last of the joined epoch is older than the join
	// (skipped, as history before the position is); the stream's last
	// publication being of another epoch means it was reset after it.
	var buf []Publication
	if s.buf != nil {
		buf = *s.buf
	}
	for i := len(buf) - 1; i >= 0; i-- {
		if buf[i].Offset == 0 {
			continue // a join or leave event
		}
		if buf[i].Epoch != s.epoch {
			s.buf = nil
			return true
		}
		break
	}
	for _, pub := range buf {
		if pub.Offset == 0 { // a join or leave event (deliverEventJoining)
			s.conn.SendPrepared(pub.Data)
			continue
		}
		s.sendLocked(pub)
	}
	s.buf = nil
	s.setLiveUnlessGone()
	return false
}
