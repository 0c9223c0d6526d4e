package hub

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// Why a call's context ended (context.Cause).
var (
	errRPCTimeout   = errors.New("rpc: call timed out")
	errRPCCancelled = errors.New("rpc: call cancelled by the caller")
	errCallerGone   = errors.New("rpc: caller disconnected")
)

// progressSink is where the rpc.progress events of one relayed call go.
type progressSink interface {
	// progress is called on the target's read loop (or the broker's
	// delivery path) in arrival order; it must not block.
	progress(data json.RawMessage)
	// wake returns a channel that receives when progress is waiting to
	// be forwarded from the relaying goroutine (flush), or nil when
	// progress is delivered at once.
	wake() <-chan struct{}
	// flush forwards the progress waiting, in order.
	flush()
}

// callerSink delivers progress to a caller connected to this node.
type callerSink struct {
	r    *rpcRelay
	conn *Conn
	id   string // the caller's rpc.call request id
}

func (s *callerSink) progress(data json.RawMessage) {
	var scratch [512]byte // the frame is copied out of it
	b := append(scratch[:0], `{"type":"event","event":"`+EventRPCProgress+`","data":{"id":`...)
	b = protocol.AppendString(b, s.id)
	if len(data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	b = append(b, "}}"...)
	if s.conn.sendFrame(ws.PrepareText(b)) {
		s.r.metrics.progress.Inc()
	}
}

func (s *callerSink) wake() <-chan struct{} { return nil }
func (s *callerSink) flush()                {}

// handleCall relays rpc.call: find the target (waiting for it up to the
// offline grace), check the grant and the method, send it the request with
// meta.caller, relay progress, answer with its response.
func (r *rpcRelay) handleCall(ctx context.Context, call *Call, p *rpcCallParams) (any, error) {
	timeout := r.cfg.DefaultTimeout
	if p.TimeoutMs > 0 {
		timeout = min(time.Duration(p.TimeoutMs)*time.Millisecond, r.cfg.MaxTimeout)
	}
	// One cancelable context and a timer, rather than context.WithTimeout
	// on top of it: a second context and its registration cost about as
	// much as the rest of a relayed call's bookkeeping.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := time.AfterFunc(timeout, func() { cancel(errRPCTimeout) })
	defer t.Stop()
	ctx = deadlineCtx{Context: ctx, deadline: time.Now().Add(timeout)}

	calls := r.callsOf(call.Conn)
	calls.mu.Lock()
	calls.calls[call.ID] = rpcCallEntry{cancel: cancel}
	calls.mu.Unlock()
	defer func() {
		calls.mu.Lock()
		delete(calls.calls, call.ID)
		calls.mu.Unlock()
	}()

	sink := &callerSink{r: r, conn: call.Conn, id: call.ID}
	if call.Idem != "" {
		return r.callIdempotent(ctx, call, p, sink)
	}
	res, err := r.relay(ctx, call.Conn.Done(), call, p, sink)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// relay relays the call and counts it; done ends it early (nil for never).
func (r *rpcRelay) relay(ctx context.Context, done <-chan struct{}, call *Call, p *rpcCallParams, sink progressSink) (json.RawMessage, error) {
	res, path, err := r.call(ctx, done, callerOf(call.Principal), p.Target.DeviceID, p.Method, p.Params, sink)
	if err == nil && path == "local" {
		r.metrics.okLocal.Inc()
	} else {
		r.metrics.calls.WithLabelValues(outcome(err), path).Inc()
	}
	return res, err
}

// callIdempotent relays a call that carries "idem" through the idempotency
// records: the target runs it at most once per principal and key, and a
// repeat answers the first result (waiting for it while it runs, without
// its progress). A timeout is remembered too: the target may have run. The
// call is not ended when the caller disconnects (it runs to its end or its
// timeout), so that the caller may repeat it after reconnecting.
func (r *rpcRelay) callIdempotent(ctx context.Context, call *Call, p *rpcCallParams, sink progressSink) (any, error) {
	params := p.Params
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage("{}")
	}
	params, err := protocol.Compact(params)
	if err != nil {
		return nil, protocol.FieldError("params", "invalid JSON")
	}
	fp := Fingerprint("rpc.call", slices.Concat([]byte(p.Target.DeviceID), []byte{0}, []byte(p.Method), []byte{0}, params))
	res, err := r.h.idem.do(ctx, call.Principal.Key(), call.Idem, fp, true, func() (json.RawMessage, error) {
		return r.relay(ctx, nil, call, p, sink)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// deadlineCtx gives a context the deadline its timer enforces, so that a
// call forwarded to another node carries its remaining time.
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

func (c deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// callsOf returns the calls-in-flight table of a calling connection.
func (r *rpcRelay) callsOf(c *Conn) *rpcCalls {
	if calls, ok := c.Value(rpcCallsKey{}).(*rpcCalls); ok {
		return calls
	}
	r.mu.Lock() // serialises creation; lock order rpcRelay.mu → Conn.mu
	defer r.mu.Unlock()
	if calls, ok := c.Value(rpcCallsKey{}).(*rpcCalls); ok {
		return calls
	}
	calls := &rpcCalls{calls: make(map[string]rpcCallEntry)}
	c.SetValue(rpcCallsKey{}, calls)
	c.AfterClose(r.callerClosed) // after SetValue: it runs at once on a closed connection
	return calls
}

// call locates the target and relays the call, waiting up to the offline
// grace for a target that is not online. done is closed when the caller
// disconnects (nil for none). path is "local" or "remote" for metrics.
func (r *rpcRelay) call(ctx context.Context, done <-chan struct{}, caller *protocol.Caller, device, method string, params json.RawMessage, sink progressSink) (json.RawMessage, string, error) {
	graceEnd := time.Now().Add(r.cfg.OfflineGrace)
	ownerChecked := false
	fresh := false // a route hint proved stale: look in the directory itself
	for {
		if s := r.localServer(device); s != nil {
			res, offline, err := r.deliverLocal(ctx, done, caller, s, method, params, sink)
			if !offline {
				return res, "local", err
			}
		}
		// Take the wake-up channel before looking again, so that a
		// registration in between is not missed.
		wake, release := r.waiter(device)
		if s := r.localServer(device); s != nil {
			release()
			res, offline, err := r.deliverLocal(ctx, done, caller, s, method, params, sink)
			if !offline {
				return res, "local", err
			}
			wake, release = r.waiter(device)
		}
		node, ok, err := r.route(ctx, device, fresh)
		if err != nil {
			release()
			if ctx.Err() != nil {
				return nil, "local", r.ctxErr(ctx, true)
			}
			r.h.log.Error("rpc: device node", "device", device, "err", err)
			return nil, "local", protocol.Errorf(protocol.CodeUnavailable, "cannot locate the target now")
		}
		if ok && node != r.node {
			release()
			msg := &nodeMsg{Kind: nodeCall, Device: device, Method: method, Params: params, Caller: caller}
			res, miss, err := r.forward(ctx, done, node, msg, sink)
			if miss != reached && r.staleRoute(device, node, miss == missUnreachable) && !fresh {
				fresh = true
				continue // look again at once (rpc_route.go)
			}
			if miss != missOffline {
				return res, "remote", err
			}
			wake, release = r.waiter(device)
		}
		if !ownerChecked {
			// Offline here and on every node: the grant is checked against
			// the device's owner, when the owner lookup knows the device,
			// before waiting for it, so that a call to another user's
			// offline device answers forbidden at once, as one to an
			// online device does, and waiting reveals nothing.
			ownerChecked = true
			if owner := r.deviceOwner(ctx, device); owner != "" && !r.cfg.allowed(caller.UserID, owner, method) {
				release()
				return nil, "local", errForbidden()
			}
		}
		wait := time.Until(graceEnd)
		if wait <= 0 {
			release()
			return nil, "local", errOffline()
		}
		t := time.NewTimer(min(wait, rpcPollInterval))
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			release()
			return nil, "local", r.ctxErr(ctx, true)
		case <-done:
			t.Stop()
			release()
			return nil, "local", protocol.Errorf(protocol.CodeUnavailable, "caller disconnected")
		}
		t.Stop()
		release()
	}
}

// ctxErr is the answer of a call whose context ended. offline says the
// target was not reached yet: a timeout then reads as unavailable.
func (r *rpcRelay) ctxErr(ctx context.Context, offline bool) *protocol.Error {
	switch context.Cause(ctx) {
	case errRPCCancelled:
		e := protocol.Errorf(protocol.CodeTimeout, "cancelled")
		e.Retryable = false
		return e.WithDetail("cancelled", true)
	case errRPCTimeout:
		if offline {
			return errOffline()
		}
		return protocol.Errorf(protocol.CodeTimeout, "the target did not answer in time")
	}
	return protocol.Errorf(protocol.CodeUnavailable, "server shutting down")
}

// deliverLocal relays a call to a target connected to this node. offline
// reports that the target went away before the request was sent: the
// caller may wait for it to come back.
func (r *rpcRelay) deliverLocal(ctx context.Context, done <-chan struct{}, caller *protocol.Caller, s *rpcServer, method string, params json.RawMessage, sink progressSink) (json.RawMessage, bool, error) {
	target := s.conn
	if !r.cfg.allowed(caller.UserID, target.Principal().UserID, method) {
		return nil, false, errForbidden()
	}
	if !s.has(method) {
		return nil, false, errUnknownRPCMethod(method)
	}
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	id, ch, err := target.startRequest(method, params, &protocol.Meta{Caller: caller}, func(id string) {
		s.mu.Lock()
		s.relays[id] = sink
		s.mu.Unlock()
	})
	if id != "" {
		defer func() {
			s.mu.Lock()
			delete(s.relays, id)
			s.mu.Unlock()
		}()
	}
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeUnavailable {
			return nil, true, nil // closed just now: wait for it like any offline target
		}
		r.h.log.Error("rpc: send request", "device", target.Principal().DeviceID, "err", err)
		return nil, false, protocol.AsError(nil)
	}
	wake := sink.wake()
	for {
		select {
		case f := <-ch:
			if wake != nil {
				sink.flush() // progress that came before the response
			}
			if f == nil {
				return nil, false, protocol.Errorf(protocol.CodeUnavailable, "target disconnected during the call")
			}
			res, err := r.result(f, target, method)
			return res, false, err
		case <-wake:
			sink.flush()
		case <-ctx.Done():
			target.forget(id)
			e := r.ctxErr(ctx, false)
			r.cancelTarget(target, id, e.Message)
			return nil, false, e
		case <-done:
			target.forget(id)
			r.cancelTarget(target, id, "caller disconnected")
			return nil, false, protocol.Errorf(protocol.CodeUnavailable, "caller disconnected")
		}
	}
}

// result turns the target's response into the caller's answer: a result
// as is, an error object with its code kept, anything malformed internal.
func (r *rpcRelay) result(f *protocol.Frame, target *Conn, method string) (json.RawMessage, error) {
	if f.OK {
		return okResult(f.Result), nil
	}
	if f.Error == nil || !knownCode(f.Error.Code) {
		p := target.Principal()
		code := ""
		if f.Error != nil {
			code = string(f.Error.Code)
		}
		r.h.log.Warn("rpc: malformed response from target", "device", p.DeviceID, "user", p.UserID, "method", method, "code", code)
		return nil, errMalformedResponse()
	}
	e := *f.Error
	return nil, &e
}

// okResult is the caller's result of a successful response: null when it
// carries none.
func okResult(res json.RawMessage) json.RawMessage {
	if len(res) == 0 {
		return json.RawMessage("null")
	}
	return res
}

func knownCode(c protocol.Code) bool {
	switch c {
	case protocol.CodeInvalidFrame, protocol.CodeBadRequest, protocol.CodeUnauthorized, protocol.CodeForbidden,
		protocol.CodeNotFound, protocol.CodeConflict, protocol.CodeUnknownMethod, protocol.CodeRateLimited,
		protocol.CodeTooLarge, protocol.CodeTimeout, protocol.CodeUnavailable, protocol.CodeInternal:
		return true
	}
	return false
}

// cancelTarget tells the target that nobody waits for request id any more.
func (r *rpcRelay) cancelTarget(target *Conn, id, reason string) {
	data, err := jsonMarshal(protocol.RPCCancel{ID: id, Reason: reason})
	if err == nil {
		target.SendEvent(EventRPCCancel, "", "", 0, data)
	}
}

// handleProgress routes an rpc.progress event from a target to the caller of
// the call it belongs to. It runs on the target's read loop.
func (r *rpcRelay) handleProgress(c *Conn, f *protocol.Frame) {
	var p protocol.RPCProgress
	s := serverOf(c)
	if s == nil || json.Unmarshal(f.Data, &p) != nil || p.ID == "" {
		r.metrics.dropped.Inc()
		return
	}
	s.mu.Lock()
	sink := s.relays[p.ID]
	s.mu.Unlock()
	if sink == nil {
		r.metrics.dropped.Inc() // the call ended already
		return
	}
	sink.progress(p.Data)
}

// waiter returns a channel closed when device next registers on this node,
// and the release to call when the caller stops waiting.
func (r *rpcRelay) waiter(device string) (<-chan struct{}, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.waiters[device]
	if w == nil {
		w = &rpcWaiter{ch: make(chan struct{})}
		r.waiters[device] = w
	}
	w.n++
	return w.ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		w.n--
		if w.n == 0 && r.waiters[device] == w {
			delete(r.waiters, device)
		}
	}
}

// RPCWaiting returns how many rpc.call requests of this node wait for the
// offline device to come online (within RPCConfig.OfflineGrace): tests
// observe that a call took the waiting path before the device connects.
func (h *Hub) RPCWaiting(device string) int {
	r := h.rpc
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.waiters[device]; w != nil {
		return w.n
	}
	return 0
}

// rpcWaiter is shared by the calls waiting for one offline device.
type rpcWaiter struct {
	ch chan struct{} // closed when the device registers
	n  int           // guarded by rpcRelay.mu: calls waiting
}

func (r *rpcRelay) nextCallID() string {
	return r.node + "/" + strconv.FormatUint(r.nextID.Add(1), 10)
}

// deviceOwner returns the user owning device by the "device" owner lookup
// (RegisterOwnerLookup), or "" when there is none, the lookup does not
// know the device, or it fails.
func (r *rpcRelay) deviceOwner(ctx context.Context, device string) string {
	o := r.h.ch.owners["device"]
	if o == nil {
		return ""
	}
	owner, err := o.Owner(ctx, Topic{Name: "device:" + device, Namespace: "device", params: []string{"deviceId", device}})
	if err != nil {
		r.h.log.Warn("rpc: device owner lookup", "device", device, "err", err)
		return ""
	}
	return owner
}
