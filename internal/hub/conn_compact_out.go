package hub

// The compact protocol's encoder side (docs/iot.md): what the hub sends a
// connection as frames of protocol v1 leaves a compact connection as
// arrays [topic, event, payload], one per WebSocket message. Publications
// are encoded once per fan-out (compactPub); the rest (replies, presence,
// relayed calls, the connection's own events) is translated here from the
// prepared v1 frame, which is rare and small next to publications. A
// message over the connection's limit is never dropped silently: a
// publication or snapshot becomes [topic, "skipped", {...}], a relayed
// call is answered too_large to its caller.

import (
	"encoding/json"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// Reasons of skipped.
const skippedTooLarge = "too_large"

// sendCompactFrame sends the compact form of a prepared v1 frame.
func (c *Conn) sendCompactFrame(frame []byte) bool {
	f, err := protocol.Decode(ws.PreparedPayload(frame))
	if err != nil {
		// Every frame the hub prepares decodes; this is a bug, not input.
		c.hub.log.Error("compact: frame to translate does not decode", "conn", c.ID(), "err", err)
		return false
	}
	switch f.Type {
	case protocol.TypeResponse:
		c.compactAnswer(f)
		return true
	case protocol.TypeRequest:
		return c.compactCall(f)
	}
	switch f.Event {
	case protocol.EventWelcome:
		var w protocol.Welcome
		if err := json.Unmarshal(f.Data, &w); err != nil {
			return false
		}
		cc := c.compact
		data, _ := jsonMarshal(protocol.CompactWelcomePayload{
			Protocol: protocol.CompactSubprotocol, ConnID: w.ConnID, Principal: w.Principal,
			HeartbeatMs: cc.pingMs, HeartbeatTimeoutMs: cc.pongMs, MaxFrameBytes: cc.maxOut,
		})
		return c.sendCompact(protocol.CompactSysTopic, protocol.CompactWelcome, data)
	case EventChannelMessage:
		return c.sendCompactPublication(f.Topic, Publication{Epoch: f.Epoch, Offset: f.Offset, Event: f.Name, Data: f.Data})
	case EventChannelJoin:
		return c.sendCompact(f.Topic, protocol.CompactJoin, f.Data)
	case EventChannelLeave:
		return c.sendCompact(f.Topic, protocol.CompactLeave, f.Data)
	case EventChannelUnsubscribed:
		return c.sendCompact(f.Topic, protocol.CompactUnsubscribed, f.Data)
	case EventRPCCancel:
		return c.sendCompact(protocol.CompactRPCTopic, protocol.CompactCancel, f.Data)
	case EventRPCProgress:
		return true // a compact client makes no rpc.call, so has no call to follow
	case protocol.EventError:
		return c.sendCompact("", protocol.CompactError, f.Data)
	}
	// The connection's own events: token.expiring, server.shutdown.
	return c.sendCompact(protocol.CompactSysTopic, f.Event, f.Data)
}

// sendCompact sends [topic, event, payload]; one over the connection's
// limit is replaced by skipped.
func (c *Conn) sendCompact(topic, event string, payload json.RawMessage) bool {
	b := protocol.AppendCompact(nil, topic, event, payload)
	if len(b) > c.compact.maxOut {
		return c.sendCompactSkipped(topic, protocol.CompactSkippedPayload{Event: event, Bytes: len(b)})
	}
	return c.sendWire(ws.PrepareText(b))
}

// sendCompactPublication sends one publication as [topic, event, data],
// or skipped when it is over the connection's limit.
func (c *Conn) sendCompactPublication(topic string, pub Publication) bool {
	b := protocol.AppendCompact(nil, topic, protocol.PublicationEvent(pub.Event), pub.Data)
	if len(b) > c.compact.maxOut {
		return c.sendCompactSkipped(topic, skippedOf(pub, len(b)))
	}
	return c.sendWire(ws.PrepareText(b))
}

func skippedOf(pub Publication, n int) protocol.CompactSkippedPayload {
	return protocol.CompactSkippedPayload{Offset: pub.Offset, Epoch: pub.Epoch, Event: protocol.PublicationEvent(pub.Event), Bytes: n}
}

// sendCompactSkipped tells the client a message was not sent.
func (c *Conn) sendCompactSkipped(topic string, p protocol.CompactSkippedPayload) bool {
	p.Reason, p.Limit = skippedTooLarge, c.compact.maxOut
	c.hub.metrics.compactSkipped.Inc()
	data, _ := jsonMarshal(p)
	return c.sendWire(ws.PrepareText(protocol.AppendCompact(nil, topic, protocol.CompactSkipped, data)))
}

// sendCompactError sends [topic, "error", {id?, code, message, ...}].
func (c *Conn) sendCompactError(topic, id string, e *protocol.Error) {
	if e == nil {
		e = protocol.AsError(nil)
	}
	data, err := jsonMarshal(protocol.CompactErrorPayload{ID: id, Code: e.Code, Message: e.Message, RetryAfterMs: e.RetryAfterMs, Details: e.Details})
	if err != nil {
		data, _ = jsonMarshal(protocol.CompactErrorPayload{ID: id, Code: e.Code, Message: e.Message})
	}
	c.sendCompact(topic, protocol.CompactError, data)
}

// compactAnswer turns the response to a request made for a client message
// (compactRequest) into the compact reply: subscribed (with the snapshot
// and the recovered publications after it), unsubscribed, registered,
// nothing for a publication; error for a failure.
func (c *Conn) compactAnswer(f *protocol.Frame) {
	r, ok := c.compact.take(f.ID)
	if !ok {
		return
	}
	if !f.OK {
		c.sendCompactError(r.topic, r.id, f.Error)
		return
	}
	switch r.kind {
	case compactSubscribe:
		var res protocol.SubscribeResult
		if err := json.Unmarshal(f.Result, &res); err != nil {
			c.sendCompactError(r.topic, r.id, protocol.AsError(err))
			return
		}
		data, _ := jsonMarshal(protocol.CompactSubscribedPayload{ID: r.id, Epoch: res.Epoch, Offset: res.Offset, Recovered: res.Recovered})
		c.sendCompact(r.topic, protocol.CompactSubscribed, data)
		if len(res.Snapshot) > 0 {
			b := protocol.AppendCompact(nil, r.topic, protocol.CompactSnapshot, res.Snapshot)
			if len(b) > c.compact.maxOut {
				c.sendCompactSkipped(r.topic, protocol.CompactSkippedPayload{Offset: res.Offset, Epoch: res.Epoch, Event: protocol.CompactSnapshot, Bytes: len(b)})
			} else {
				c.sendWire(ws.PrepareText(b))
			}
		}
		for _, p := range res.Publications {
			c.sendCompactPublication(r.topic, p)
		}
	case compactUnsubscribe:
		c.sendCompact(r.topic, protocol.CompactUnsubscribed, nil)
	case compactRegister:
		c.sendCompact(protocol.CompactRPCTopic, protocol.CompactRegistered, f.Result)
	case compactPublish:
		// No answer: a device publishing readings does not want one each.
	}
}

// compactCall sends a relayed RPC request as ["$rpc", "call", {...}]. A
// call over the connection's limit is answered too_large to its caller,
// as if by the device.
func (c *Conn) compactCall(f *protocol.Frame) bool {
	p := protocol.CompactCallPayload{ID: f.ID, Method: f.Method, Params: f.Params}
	if f.Meta != nil {
		p.Caller = f.Meta.Caller
	}
	data, err := jsonMarshal(p)
	if err != nil {
		return false
	}
	b := protocol.AppendCompact(nil, protocol.CompactRPCTopic, protocol.CompactCall, data)
	if len(b) > c.compact.maxOut {
		c.hub.metrics.compactSkipped.Inc()
		c.response(&protocol.Frame{Type: protocol.TypeResponse, ID: f.ID,
			Error: protocol.Errorf(protocol.CodeTooLarge, "the call is %d bytes, over the device's limit of %d", len(b), c.compact.maxOut)})
		return true
	}
	return c.sendWire(ws.PrepareText(b))
}

// compactPub is a publication encoded once for the compact subscribers of
// a fan-out (HandlePublication).
type compactPub struct {
	payload []byte // the array
	frame   []byte // payload as a prepared WebSocket frame
}

// deliverCompact queues pub to a compact subscriber of a fan-out: the
// shared frame, or skipped when it is over the subscriber's limit. It
// reports whether something was queued, and whether through batch.
func (s *subscriber) deliverCompact(topic string, pub Publication, cp *compactPub, batch *ws.Batch) (sent, batched bool) {
	if cp.payload == nil {
		cp.payload = protocol.AppendCompact(nil, topic, protocol.PublicationEvent(pub.Event), pub.Data)
		cp.frame = ws.PrepareText(cp.payload)
	}
	if len(cp.payload) > s.compact.maxOut {
		return s.conn.sendCompactSkipped(topic, skippedOf(pub, len(cp.payload))), false
	}
	if s.wsc != nil && s.wsc.SendBatch(batch, cp.frame) == nil {
		return true, true
	}
	return false, false
}
