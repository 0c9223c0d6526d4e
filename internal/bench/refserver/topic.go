//go:build linux

package main

import (
	"strconv"
	"sync"

	"github.com/junctionhq/junction/protocol"
)

// topic is one channel: its offsets, the publications waiting for the
// fan-out and the subscribers. One goroutine at a time delivers (the
// delivering flag), in offset order, so each subscriber's queue holds the
// publications in order.
type topic struct {
	name string  // set once
	srv  *server // set once

	mu      sync.Mutex
	offset  uint64 // guarded by mu: the last publication's offset
	pending []pub  // guarded by mu: encoded publications the fan-out has not taken, in offset order
	// subs is appended to in place and rebuilt into a new array when
	// compacted, never changed otherwise: the fan-out reads a snapshot
	// (the slice as it was) without the lock.
	subs       []sub  // guarded by mu
	gone       int    // guarded by mu: subscribers in subs whose connection closed
	scratch    []byte // guarded by mu: the event's JSON before framing
	delivering bool   // guarded by mu: a goroutine is in fanOut's delivery loop

	// Owned by the goroutine that set delivering.
	spare  []pub    // the emptied batch array, the next pending
	frames [][]byte // a batch's frames
	sizes  []int    // sizes[i]: bytes of frames[i:]
	woken  []*conn  // connections that joined the ready list
}

// pub is one publication, encoded once as a complete WebSocket frame.
type pub struct {
	off   uint64
	frame []byte
}

// sub is a subscription: the connection receives publications after from.
type sub struct {
	c    *conn
	from uint64
}

// topic returns the topic name, created on first use; topics are never
// forgotten.
func (s *server) topic(name string) *topic {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	t := s.topics[name]
	if t == nil {
		t = &topic{name: name, srv: s}
		s.topics[name] = t
	}
	return t
}

// position appends a channel position result: {"epoch","offset"}, with
// "recovered":false for a subscription.
func (s *server) position(dst []byte, off uint64, subscription bool) []byte {
	dst = append(dst, `{"epoch":`...)
	dst = protocol.AppendString(dst, s.epoch)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, off, 10)
	if subscription {
		dst = append(dst, `,"recovered":false`...)
	}
	return append(dst, '}')
}

// publish assigns data the next offset, encodes it once and adds it to the
// pending publications; the caller runs fanOut after its publications (the
// epoll reader after each pass, so that those of one pass go out together).
func (t *topic) publish(data []byte) uint64 {
	t.mu.Lock()
	t.offset++
	off := t.offset
	t.scratch = protocol.AppendEvent(t.scratch[:0], protocol.EventChannelMessage, t.name, t.srv.epoch, off, data)
	frame := appendFrame(make([]byte, 0, len(t.scratch)+4), opText, t.scratch)
	t.pending = append(t.pending, pub{off: off, frame: frame})
	t.mu.Unlock()
	return off
}

// subscribe adds c and hands over its answer under the topic lock, so that
// the answer precedes the first publication it will receive (offset + 1):
// queued, or c claimed for the reader to write it, which holds back the
// publications queued meanwhile.
func (t *topic) subscribe(c *conn, id []byte) {
	t.mu.Lock()
	t.subs = append(t.subs, sub{c: c, from: t.offset})
	frame := appendFrame(nil, opText, protocol.AppendResult(nil, string(id), t.srv.position(nil, t.offset, true)))
	c.mu.Lock()
	how := c.sendLocked(frame, false)
	c.mu.Unlock()
	t.mu.Unlock()
	c.finishSend(frame, how)
}

// unsubscribed counts a subscriber whose connection closed; once they are
// half of subs, subs is rebuilt without them.
func (t *topic) unsubscribed() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gone++
	if 2*t.gone <= len(t.subs) {
		return
	}
	live := make([]sub, 0, len(t.subs)-t.gone+16)
	for _, s := range t.subs {
		if !s.c.gone.Load() {
			live = append(live, s)
		}
	}
	t.subs, t.gone = live, 0
}

// fanOut delivers the pending publications, unless another goroutine is
// delivering them already (it takes these too before it stops): it takes
// all that is pending and appends the same frames to every subscriber's
// queue, one lock per subscriber per batch, then wakes the writers once.
func (t *topic) fanOut() {
	t.mu.Lock()
	if t.delivering {
		t.mu.Unlock()
		return
	}
	t.delivering = true
	for len(t.pending) > 0 {
		batch := t.pending
		t.pending = t.spare
		subs := t.subs
		t.mu.Unlock()
		t.deliver(batch, subs)
		clear(batch)
		t.mu.Lock()
		t.spare = batch[:0]
	}
	t.delivering = false
	t.mu.Unlock()
}

// deliver appends batch to the queues of subs.
func (t *topic) deliver(batch []pub, subs []sub) {
	frames := t.frames[:0]
	for _, p := range batch {
		frames = append(frames, p.frame)
	}
	sizes := append(t.sizes[:0], make([]int, len(frames)+1)...)
	for i := len(frames) - 1; i >= 0; i-- {
		sizes[i] = sizes[i+1] + len(frames[i])
	}
	woken := t.woken[:0]
	first := batch[0].off
	for _, s := range subs {
		i := 0
		if s.from >= first { // subscribed after some of these
			if i = int(s.from - first + 1); i >= len(frames) {
				continue
			}
		}
		if s.c.enqueue(frames[i:], sizes[i]) {
			woken = append(woken, s.c)
		}
	}
	t.srv.ready.pushAll(woken)
	clear(woken)
	clear(frames)
	t.frames, t.sizes, t.woken = frames, sizes, woken
}
