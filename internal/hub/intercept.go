package hub

import (
	"context"
	"encoding/json"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// Interceptor lets a part above the hub (the backend proxy, package
// internal/proxy) take part in a connection's life without being linked
// into the hub: it may refuse a connection and describe it, refuse a
// subscription, refuse or rewrite a publication, and serve the methods the
// method table does not hold. It is consulted after the hub's own checks
// (the namespace rules, the method table) and must be safe for concurrent
// use; a call that waits on something slow must honour ctx.
type Interceptor interface {
	// Connect runs before a WebSocket is upgraded. An error refuses the
	// connection: its *protocol.Error is the HTTP answer (no upgrade).
	// info, when not empty, is attached to the connection: it appears as
	// the ClientInfo's info in presence sets, join and leave events and the
	// publications the connection makes.
	Connect(ctx context.Context, p *auth.Principal) (info json.RawMessage, err error)
	// Subscribe runs when the namespace's rules allowed p to subscribe to
	// t on connection connID; an error refuses the subscription.
	Subscribe(ctx context.Context, p *auth.Principal, t Topic, connID string) error
	// Publish runs when the namespace's rules allowed p to publish data to
	// t (Hub.PublishAs: WebSocket and REST, not the server's own
	// Hub.Publish). event is the publication's event name ("" for the
	// default, message). It returns the data to publish, data itself or a
	// rewrite (compact JSON), or an error refusing the publication.
	Publish(ctx context.Context, p *auth.Principal, t Topic, event string, data json.RawMessage, info *ClientInfo) (json.RawMessage, error)
	// Method returns the method serving name when the table has none, or
	// nil (the request then answers unknown_method). The returned method
	// must be Async: its handler runs on its own goroutine, within the
	// connection's MaxAsyncPerConn.
	Method(name string) *Method
}

// interceptorBox holds an Interceptor for an atomic.Pointer.
type interceptorBox struct{ i Interceptor }

// SetInterceptor installs i (nil removes it). It may be called at any
// time; requests already past a hook are not affected.
func (h *Hub) SetInterceptor(i Interceptor) {
	if i == nil {
		h.intercept.Store(nil)
		return
	}
	h.intercept.Store(&interceptorBox{i})
}

func (h *Hub) interceptor() Interceptor {
	if b := h.intercept.Load(); b != nil {
		return b.i
	}
	return nil
}

// connInfoKey is the Conn value holding the info an Interceptor's Connect
// attached (json.RawMessage).
type connInfoKey struct{}

// connInfo returns the info attached to c at connect, or nil.
func connInfo(c *Conn) json.RawMessage {
	v, _ := c.Value(connInfoKey{}).(json.RawMessage)
	return v
}

// interceptConnect runs the Connect hook for p, returning the info to
// attach.
func (h *Hub) interceptConnect(ctx context.Context, p *auth.Principal) (json.RawMessage, error) {
	i := h.interceptor()
	if i == nil {
		return nil, nil
	}
	return i.Connect(ctx, p)
}

// interceptSubscribe runs the Subscribe hook.
func (h *Hub) interceptSubscribe(ctx context.Context, p *auth.Principal, t Topic, c *Conn) error {
	i := h.interceptor()
	if i == nil {
		return nil
	}
	return i.Subscribe(ctx, p, t, c.ID())
}

// interceptPublish runs the Publish hook, returning the data to publish.
func (h *Hub) interceptPublish(ctx context.Context, p *auth.Principal, t Topic, event string, data json.RawMessage, info *ClientInfo) (json.RawMessage, error) {
	i := h.interceptor()
	if i == nil {
		return data, nil
	}
	out, err := i.Publish(ctx, p, t, event, data, info)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, protocol.Errorf(protocol.CodeInternal, "internal error")
	}
	return out, nil
}

// interceptMethod returns the Interceptor's method for name, or nil.
func (h *Hub) interceptMethod(name string) *Method {
	i := h.interceptor()
	if i == nil {
		return nil
	}
	m := i.Method(name)
	if m == nil || m.Mode != Async || m.Handler == nil || m.Scope == "" {
		return nil
	}
	return m
}

// MatchTopic matches topic against a namespace pattern (NamespaceConfig's
// syntax) and returns it with its bound parameters, as the hub gives it to
// an Interceptor: for the Interceptor's own tests and tools.
func MatchTopic(pattern, topic string) (Topic, error) {
	p, err := parsePattern(pattern)
	if err != nil {
		return Topic{}, err
	}
	if err := ValidateTopic(topic); err != nil {
		return Topic{}, err
	}
	params, ok := p.match(topic)
	if !ok {
		return Topic{}, protocol.Errorf(protocol.CodeNotFound, "topic %q does not match the pattern %s", topic, pattern)
	}
	return Topic{Name: topic, Namespace: p.name, params: params}, nil
}
