package hub

// The compact protocol's decoder side (docs/iot.md): a message
// [topic, event, payload] from the client becomes the request of protocol
// v1 it stands for, handled by the same method table (scopes, rate limit,
// namespace rules, idempotency of nothing: compact messages carry no idem
// key); conn_compact_out.go turns the answers back into arrays.

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/junctionhq/junction/protocol"
)

// compactConn is a compact connection's codec state (Conn.compact).
type compactConn struct {
	maxOut int   // set once: the largest message sent to the client, in bytes
	pingMs int64 // set once: the heartbeat announced in the welcome
	pongMs int64 // set once

	mu      sync.Mutex
	next    uint64                // guarded by mu: the last request id made
	pending map[string]compactReq // guarded by mu: requests made for client messages, by request id
}

// compactReq is a request made for one client message, awaiting its answer.
type compactReq struct {
	kind  compactKind
	topic string // the message's topic
	id    string // the client's id (subscribe), echoed in the answer
}

type compactKind uint8

const (
	compactSubscribe compactKind = iota + 1
	compactUnsubscribe
	compactPublish
	compactRegister
)

// take removes and returns the request id.
func (cc *compactConn) take(id string) (compactReq, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	r, ok := cc.pending[id]
	delete(cc.pending, id)
	return r, ok
}

// compactMessage handles one inbound message of a compact connection. A
// message that cannot be decoded or used is answered with
// [topic, "error", {code, message}]; the connection stays open.
func (c *Conn) compactMessage(payload []byte) {
	h := c.hub
	h.metrics.framesIn.Inc()
	m, err := protocol.DecodeCompact(payload)
	if err != nil {
		h.metrics.invalidFrames.Inc()
		c.sendCompactError(m.Topic, "", protocol.AsError(err))
		return
	}
	switch m.Topic {
	case protocol.CompactRPCTopic:
		c.compactRPC(m)
		return
	case protocol.CompactSysTopic:
		c.sendCompactError(m.Topic, "", protocol.Errorf(protocol.CodeBadRequest, "the server accepts no events on %s", m.Topic))
		return
	}
	switch m.Event {
	case protocol.CompactSubscribe:
		var p protocol.CompactSubscribeParams
		if err := DecodeParams(m.Payload, &p); err != nil {
			c.sendCompactError(m.Topic, "", protocol.AsError(err))
			return
		}
		c.compactRequest(compactSubscribe, m.Topic, p.ID, "channel.subscribe", protocol.SubscribeParams{Topic: m.Topic, Since: p.Since})
	case protocol.CompactUnsubscribe:
		c.compactRequest(compactUnsubscribe, m.Topic, "", "channel.unsubscribe", protocol.TopicParams{Topic: m.Topic})
	case protocol.CompactSubscribed, protocol.CompactUnsubscribed, protocol.CompactError, protocol.CompactSkipped,
		protocol.CompactSnapshot, protocol.CompactJoin, protocol.CompactLeave:
		c.sendCompactError(m.Topic, "", protocol.Errorf(protocol.CodeBadRequest, "%q is an event the server sends", m.Event))
	default:
		// A publication named by the event, under the namespace's publish
		// rule (channel.publish); no answer unless it fails.
		c.compactRequest(compactPublish, m.Topic, "", "channel.publish", protocol.PublishParams{Topic: m.Topic, Event: m.Event, Data: m.Payload})
	}
}

// compactRPC handles a message on $rpc: register or unregister the methods
// the device serves, answer a relayed call (result or error), report its
// progress.
func (c *Conn) compactRPC(m protocol.CompactMessage) {
	switch m.Event {
	case protocol.CompactRegister:
		c.compactRequest(compactRegister, m.Topic, "", "rpc.register", m.Payload)
	case "unregister":
		c.compactRequest(compactRegister, m.Topic, "", "rpc.unregister", m.Payload)
	case protocol.CompactResult:
		var p protocol.CompactResultPayload
		if err := DecodeParams(m.Payload, &p); err != nil || p.ID == "" {
			c.sendCompactError(m.Topic, "", protocol.FieldError("id", "required"))
			return
		}
		result := p.Result
		if len(result) == 0 {
			result = json.RawMessage("null")
		}
		c.response(&protocol.Frame{Type: protocol.TypeResponse, ID: p.ID, OK: true, Result: result})
	case protocol.CompactError:
		var p protocol.CompactErrorPayload
		if err := DecodeParams(m.Payload, &p); err != nil || p.ID == "" || p.Code == "" {
			c.sendCompactError(m.Topic, p.ID, protocol.Errorf(protocol.CodeBadRequest, "an error answer needs id and code"))
			return
		}
		e := &protocol.Error{Code: p.Code, Message: p.Message, RetryAfterMs: p.RetryAfterMs, Details: p.Details}
		c.response(&protocol.Frame{Type: protocol.TypeResponse, ID: p.ID, Error: e})
	case "progress":
		c.hub.clientEvent(c, &protocol.Frame{Type: protocol.TypeEvent, Event: EventRPCProgress, Data: m.Payload})
	default:
		c.sendCompactError(m.Topic, "", protocol.Errorf(protocol.CodeBadRequest, "unknown event %q on %s", m.Event, m.Topic))
	}
}

// compactRequest makes the request of protocol v1 a client message stands
// for and routes it like any request; its answer comes back through
// compactAnswer.
func (c *Conn) compactRequest(kind compactKind, topic, clientID, method string, params any) {
	var raw json.RawMessage
	switch p := params.(type) {
	case json.RawMessage:
		raw = p
	default:
		b, err := jsonMarshal(params)
		if err != nil {
			c.sendCompactError(topic, clientID, protocol.AsError(err))
			return
		}
		raw = b
	}
	cc := c.compact
	cc.mu.Lock()
	cc.next++
	// A request id no client chooses: compact clients have none, and the
	// ids of v1 clients never reach this table.
	id := "k" + strconv.FormatUint(cc.next, 10)
	if cc.pending == nil {
		cc.pending = make(map[string]compactReq)
	}
	cc.pending[id] = compactReq{kind: kind, topic: topic, id: clientID}
	cc.mu.Unlock()
	c.request(&protocol.Frame{Type: protocol.TypeRequest, ID: id, Method: method, Params: bytes.Clone(raw)})
}
