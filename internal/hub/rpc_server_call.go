package hub

import (
	"context"
	"encoding/json"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// CallDevice relays a call that the server itself makes (a scheduled job)
// to device, as if caller had sent rpc.call: the same grants (caller's user
// against the device's owner), offline grace, relay across nodes and
// metrics, and meta.caller names caller's user (and device, if any).
// Progress is dropped. timeout <= 0 selects hub.rpc.default_timeout; it is
// capped at hub.rpc.max_timeout. The error is a *protocol.Error (forbidden,
// unknown_method, unavailable when the device stays offline, timeout) or
// the target's own error.
func (h *Hub) CallDevice(ctx context.Context, caller *auth.Principal, device, method string, params json.RawMessage, timeout time.Duration) (json.RawMessage, error) {
	r := h.rpc
	if caller == nil || caller.UserID == "" {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "a call needs a caller user")
	}
	if device == "" || method == "" {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "a call needs a device and a method")
	}
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage("{}")
	}
	params, err := protocol.Compact(params)
	if err != nil {
		return nil, protocol.FieldError("params", "invalid JSON")
	}
	if timeout <= 0 {
		timeout = r.cfg.DefaultTimeout
	}
	timeout = min(timeout, r.cfg.MaxTimeout)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := time.AfterFunc(timeout, func() { cancel(errRPCTimeout) })
	defer t.Stop()
	ctx = deadlineCtx{Context: ctx, deadline: time.Now().Add(timeout)}
	res, path, err := r.call(ctx, nil, callerOf(caller), device, method, params, discardSink{})
	r.metrics.calls.WithLabelValues(outcome(err), path).Inc()
	return res, err
}

// discardSink drops the progress of a call nobody watches.
type discardSink struct{}

func (discardSink) progress(json.RawMessage) {}
func (discardSink) wake() <-chan struct{}    { return nil }
func (discardSink) flush()                   {}

// CheckTopic reports whether topic is well formed and matches a namespace
// (bad_request or not_found otherwise), without publishing.
func (h *Hub) CheckTopic(topic string) error {
	_, _, err := h.ch.resolve(topic)
	return err
}
