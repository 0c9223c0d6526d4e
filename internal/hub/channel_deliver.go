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
	lt := h.ch.lookup(topic)
	if lt == nil {
		return
	}
	sp := lt.subs.Load()
	if sp == nil {
		return
	}
	var frame []byte
	var cp compactPub // the compact form, for compact subscribers
	var batch ws.Batch
	n, direct := 0, 0
	for _, s := range *sp {
		if !s.live() {
			if s.deliverJoining(pub) {
				n++
			}
			continue
		}
		if pub.Epoch != s.epoch {
			h.dropSubscriber(s, "reset", true)
			continue
		}
		if pub.Offset <= s.after {
			continue // already in the subscriber's snapshot or history
		}
		if s.compact != nil {
			sent, batched := s.deliverCompact(topic, pub, &cp, &batch)
			if sent {
				n++
			}
			if batched {
				direct++
			}
			continue
		}
		if frame == nil {
			frame = ws.PrepareText(protocol.AppendPublication(nil, topic, pub.Epoch, pub.Offset, pub.Event, pub.Data))
		}
		// The frame is counted once per publication below (framesOut), as
		// one contended atomic rather than one per delivery.
		if s.wsc != nil && s.wsc.SendBatch(&batch, frame) == nil {
			n++
			direct++
		}
	}
	batch.Flush()
	if direct > 0 {
		h.metrics.framesOut.Add(float64(direct))
	}
	h.ch.metrics.deliveries.Add(float64(n))
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
