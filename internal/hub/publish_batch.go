package hub

// Consecutive channel.publish requests of one connection, handed to a
// BatchPublisher together: one broker round trip for several publications,
// in the order they arrived.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// BatchPublisher is implemented by Streams whose Publish is a round trip to
// another process (Redis): PublishBatch publishes reqs in their order, in
// one round trip where it can. A connection's requests are answered one at
// a time, so without it a publisher's rate is bounded by that round trip,
// and the publications queued behind it wait for it.
type BatchPublisher interface {
	// PublishBatch publishes reqs in order: each one's offset follows the
	// previous one's on its topic (unless it failed). It returns one
	// result per request, in the same order; each is what Publish would
	// have returned for it.
	PublishBatch(ctx context.Context, reqs []PublishRequest) []PublishResult
}

// PublishRequest is one publication of a batch (Streams.Publish's arguments).
type PublishRequest struct {
	Topic string
	Data  json.RawMessage
	Opts  PublishOptions
}

// PublishResult is one outcome of a batch (Streams.Publish's results).
type PublishResult struct {
	Pos StreamPosition
	Err error
}

// maxPublishBatch bounds the requests one batch takes from an inbox.
const maxPublishBatch = 64

// takePublishBatch takes, after f (a channel.publish request the drainer
// holds), the channel.publish requests that immediately follow it in the
// inbox, up to maxPublishBatch in all, when the broker can publish them
// together. Requests with an idempotency key, any other method and every
// request after it stay in the inbox: order is kept.
func (c *Conn) takePublishBatch(f *protocol.Frame) []*protocol.Frame {
	h := c.hub
	if f.Method != "channel.publish" || f.Idem != "" || h.ch.batch == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(c.inbox) && n+1 < maxPublishBatch {
		g := c.inbox[n]
		if g.Method != "channel.publish" || g.Idem != "" {
			break
		}
		n++
	}
	if n == 0 {
		return nil
	}
	batch := make([]*protocol.Frame, 0, n+1)
	batch = append(batch, f)
	batch = append(batch, c.inbox[:n]...)
	clear(c.inbox[:n])
	c.inbox = c.inbox[n:]
	return batch
}

// handlePublishBatch answers fs, channel.publish requests without
// idempotency keys in arrival order, as handle would one by one: each is
// decoded and authorized in order, those that pass are published together
// (PublishBatch), and each gets its own answer, in order. A request whose
// namespace has a publish hook (PublishHooks) is published after what
// precedes it was published and answered, then its hook runs: a hook sees
// the stream as it would one request at a time. It releases one inflight
// count per request.
func (c *Conn) handlePublishBatch(fs []*protocol.Frame) {
	h := c.hub
	start := time.Now()
	errs := make([]error, len(fs))
	pos := make([]StreamPosition, len(fs))
	reqs := make([]PublishRequest, 0, len(fs))
	idx := make([]int, 0, len(fs)) // request k of reqs is frame idx[k]
	answered := 0
	// flush publishes reqs, then answers the frames before upto.
	flush := func(upto int) {
		if len(reqs) > 0 {
			for k, r := range h.publishBatch(reqs) {
				i := idx[k]
				if r.Err != nil {
					errs[i] = publishErr(reqs[k].Topic, r.Err)
					continue
				}
				h.ch.metrics.publications.Inc()
				pos[i] = r.Pos
			}
			reqs, idx = reqs[:0], idx[:0]
		}
		d := time.Since(start).Seconds()
		for ; answered < upto; answered++ {
			f, err := fs[answered], errs[answered]
			if err != nil {
				pe := protocol.AsError(err)
				if pe.Code == protocol.CodeInternal {
					p := c.Principal()
					h.log.Error("method failed", "method", f.Method, "conn", c.ID(), "user", p.UserID, "device", p.DeviceID, "err", err)
				}
				c.sendError(f.ID, pe)
			} else {
				p := pos[answered]
				c.sendResult(f.ID, &protocol.PublishResult{Epoch: p.Epoch, Offset: p.Offset})
			}
			h.metrics.methodSeconds.WithLabelValues(f.Method, outcome(err)).Observe(d)
			h.inflight.Done()
		}
	}
	for i, f := range fs {
		req, t, err := c.preparePublish(f)
		if err != nil {
			errs[i] = err
			continue
		}
		if h.publishHooked(t.Namespace) {
			flush(i)
			if req.Data, err = h.interceptPublish(h.ctx, c.Principal(), t, req.Opts.Event, req.Data, req.Opts.Info); err != nil {
				errs[i] = err
				continue
			}
		}
		reqs = append(reqs, req)
		idx = append(idx, i)
	}
	flush(len(fs))
}

// PublishHooks is implemented by an Interceptor that can tell which
// namespaces have a publish hook (Interceptor.Publish does something for
// them only). Publications to the others are batched without calling it.
type PublishHooks interface {
	PublishHooks(namespace string) bool
}

// publishHooked reports whether a publication to namespace must go through
// the Interceptor's Publish: when there is one that does not say otherwise.
func (h *Hub) publishHooked(namespace string) bool {
	i := h.interceptor()
	if i == nil {
		return false
	}
	if ph, ok := i.(PublishHooks); ok {
		return ph.PublishHooks(namespace)
	}
	return true
}

// publishBatch runs PublishBatch, a panic answering every request internal
// (as invoke does for one).
func (h *Hub) publishBatch(reqs []PublishRequest) (res []PublishResult) {
	defer func() {
		if r := recover(); r != nil {
			h.logPanic("channel.publish", "", r)
			res = make([]PublishResult, len(reqs))
			for i := range res {
				res[i].Err = protocol.AsError(nil)
			}
		}
	}()
	res = h.ch.batch.PublishBatch(h.ctx, reqs)
	if len(res) != len(reqs) {
		panic(fmt.Sprintf("hub: PublishBatch answered %d results for %d requests", len(res), len(reqs)))
	}
	return res
}

// preparePublish is channel.publish up to the broker: params, namespace,
// event name, the publish rule (publishEventAs but the interceptor's hook,
// which the caller runs when there is one).
func (c *Conn) preparePublish(f *protocol.Frame) (req PublishRequest, t Topic, err error) {
	h := c.hub
	defer func() {
		if r := recover(); r != nil {
			h.logPanic(f.Method, c.ID(), r)
			err = protocol.AsError(nil)
		}
	}()
	var p publishParams
	if err := decodeParamsInto(f.Params, &p); err != nil {
		return req, t, err
	}
	ns, t, err := h.ch.resolve(p.Topic)
	if err != nil {
		return req, t, err
	}
	event, err := protocol.NormalizePublicationEvent(p.Event)
	if err != nil {
		return req, t, err
	}
	if err := ns.authorize(h.ctx, c.Principal(), t, actPublish); err != nil {
		return req, t, err
	}
	if len(p.Data) == 0 {
		return req, t, protocol.FieldError("data", "required")
	}
	return PublishRequest{Topic: t.Name, Data: p.Data, Opts: PublishOptions{
		Event: event, HistorySize: ns.cfg.HistorySize, HistoryTTL: ns.cfg.HistoryTTL, Info: clientInfo(c),
	}}, t, nil
}

// publishErr is how publish reports a broker's error.
func publishErr(topic string, err error) error {
	if errors.Is(err, ErrIdemConflict) {
		return protocol.Errorf(protocol.CodeConflict, "this idempotency key was used for another request")
	}
	return fmt.Errorf("publish to %s: %w", topic, err)
}
