package hub

import (
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// The fast path of rpc.call: a call whose target serves the method on this
// node, online, and that the caller may make, is relayed from the caller's
// read loop without a goroutine of its own. The relayed request is
// registered with the target's rpcServer (relays, by relayed id), and
// whichever happens first ends the call, exactly once (inlineCall.finish):
//
//   - the target's response, on the target's read loop (relayResponse);
//   - a malformed response (failPendingResponse);
//   - the timeout (its queue's timer: rpc_timeout.go);
//   - rpc.cancel from the caller (handleCancel, after its own answer);
//   - the caller's connection closing (callerClosed);
//   - the target's connection closing (serverClosed).
//
// Everything else (an offline target, another node, a refusal, an unknown
// method, odd params) takes the Async path of handleCall, which answers
// the same way. Hub shutdown closes every connection, which ends the calls
// in flight through the last two cases.

// inlineCall is one rpc.call relayed on the fast path.
type inlineCall struct {
	r      *rpcRelay
	m      *Method    // set once: rpc.call, for its metrics
	caller *Conn      // set once
	callID string     // set once: the caller's request id
	calls  *rpcCalls  // set once: the caller's calls in flight
	srv    *rpcServer // set once: the target's RPC state
	id     string     // set once: the relayed request id
	method string     // set once
	start  time.Time  // set once
	// timeout is the call's place in its timeout queue (rpc_timeout.go).
	timeout timeoutEntry
	done    atomic.Bool // finish ran
}

// startCall implements Method.Start for rpc.call.
func (r *rpcRelay) startCall(c *Conn, callID string, params json.RawMessage, idem string) bool {
	if idem != "" {
		return false // through the idempotency records (callIdempotent)
	}
	// The params are read without allocating: the target is looked up
	// with the device id's bytes and the method's name is the target's.
	rp, ok := scanCallParams(params)
	if !ok {
		return false
	}
	r.mu.RLock()
	s := r.servers[string(rp.device)]
	r.mu.RUnlock()
	if s == nil {
		p := rp.params()
		if p.Validate() != nil {
			return false
		}
		return r.startForward(c, callID, &p) // rpc_forward.go
	}
	// What Validate checks, but the method (the target serves only valid
	// ones) and null params (scanCallParams declines them). A closed
	// target is declined by nextRequestID.
	if len(rp.device) > protocol.MaxIDLength || rp.timeoutMs < 0 || len(rp.args) > 0 && rp.args[0] != '{' {
		return false
	}
	method, ok := s.served(rp.method)
	caller := c.Principal()
	target := s.conn
	if !ok || !r.cfg.allowed(caller.UserID, target.Principal().UserID, method) {
		return false
	}
	timeout := r.cfg.DefaultTimeout
	if rp.timeoutMs > 0 {
		timeout = min(time.Duration(rp.timeoutMs)*time.Millisecond, r.cfg.MaxTimeout)
	}
	id, ok := target.nextRequestID()
	if !ok {
		return false
	}
	ic := &inlineCall{r: r, m: r.callMethod, caller: c, callID: callID, calls: r.callsOf(c),
		srv: s, id: id, method: method, start: time.Now()}
	ic.calls.mu.Lock()
	ic.calls.calls[callID] = rpcCallEntry{inline: ic}
	ic.calls.mu.Unlock()
	s.mu.Lock()
	s.relays[id] = ic
	s.mu.Unlock()
	// The timeout runs only once the call is registered (its end
	// unregisters it); an end that came first found it not queued yet.
	r.timeouts.add(&ic.timeout, ic, timeout)
	if ic.done.Load() {
		r.timeouts.remove(&ic.timeout)
	}

	frame, err := requestFrame(id, method, rp.args, callerOf(caller))
	if err == nil && target.sendFrame(frame) {
		return true
	}
	// Not sent (the target is closing): unless its close ended the call
	// already, hand the call to the Async path, which waits for the
	// target like for any offline one.
	if !ic.done.CompareAndSwap(false, true) {
		return true
	}
	ic.release()
	return false
}

// release forgets the call and its timeout.
func (ic *inlineCall) release() {
	ic.r.timeouts.remove(&ic.timeout)
	ic.srv.mu.Lock()
	if ic.srv.relays[ic.id] == progressSink(ic) {
		delete(ic.srv.relays, ic.id)
	}
	ic.srv.mu.Unlock()
	ic.calls.mu.Lock()
	if ic.calls.calls[ic.callID].inline == inlineCaller(ic) {
		delete(ic.calls.calls, ic.callID)
	}
	ic.calls.mu.Unlock()
}

// finish ends the call once: it answers the caller with res or err and,
// when cancelReason is not empty, tells the target with rpc.cancel. It
// reports whether this was the end of the call.
func (ic *inlineCall) finish(res json.RawMessage, err error, cancelReason string) bool {
	if !ic.done.CompareAndSwap(false, true) {
		return false
	}
	ic.release()
	r, c, h := ic.r, ic.caller, ic.r.h
	if cancelReason != "" {
		r.cancelTarget(ic.srv.conn, ic.id, cancelReason)
	}
	if err != nil {
		pe := protocol.AsError(err)
		if pe.Code == protocol.CodeInternal {
			p := c.Principal()
			h.log.Error("method failed", "method", ic.m.Name, "conn", c.ID(), "user", p.UserID, "device", p.DeviceID, "err", err)
		}
		c.sendError(ic.callID, pe)
		r.metrics.calls.WithLabelValues(outcome(err), "local").Inc()
	} else {
		c.sendRawResult(ic.callID, res)
		r.metrics.okLocal.Inc()
	}
	if err == nil { // ic.m is rpc.call
		r.metrics.okSeconds.Observe(time.Since(ic.start).Seconds())
	} else {
		h.metrics.methodSeconds.WithLabelValues(ic.m.Name, outcome(err)).Observe(time.Since(ic.start).Seconds())
	}
	c.mu.Lock()
	c.async--
	c.mu.Unlock()
	h.inflight.Done()
	return true
}

// response ends the call with the target's response.
func (ic *inlineCall) response(f *protocol.Frame) {
	if ic.done.Load() {
		return
	}
	res, err := ic.r.result(f, ic.srv.conn, ic.method)
	ic.finish(res, err, "")
}

// result ends the call with the target's successful answer, res aliasing
// the read buffer: the caller's frame is a copy.
func (ic *inlineCall) result(res json.RawMessage) {
	ic.finish(okResult(res), nil, "")
}

func (ic *inlineCall) timedOut() {
	e := protocol.Errorf(protocol.CodeTimeout, "the target did not answer in time")
	ic.finish(nil, e, e.Message)
}

// cancel ends the call for rpc.cancel (errRPCCancelled) or the caller's
// close (errCallerGone).
func (ic *inlineCall) cancel(cause error) {
	if cause == errCallerGone {
		ic.finish(nil, protocol.Errorf(protocol.CodeUnavailable, "caller disconnected"), "caller disconnected")
		return
	}
	e := protocol.Errorf(protocol.CodeTimeout, "cancelled")
	e.Retryable = false
	ic.finish(nil, e.WithDetail("cancelled", true), e.Message)
}

// targetGone ends the call when the target's connection closed.
func (ic *inlineCall) targetGone() {
	ic.finish(nil, protocol.Errorf(protocol.CodeUnavailable, "target disconnected during the call"), "")
}

// progress implements progressSink: it relays the target's progress to
// the caller until the call ends.
func (ic *inlineCall) progress(data json.RawMessage) {
	if ic.done.Load() {
		ic.r.metrics.dropped.Inc()
		return
	}
	(&callerSink{r: ic.r, conn: ic.caller, id: ic.callID}).progress(data)
}

func (ic *inlineCall) wake() <-chan struct{} { return nil }
func (ic *inlineCall) flush()                {}

// inlineRelay is a call relayed to a target connected here on a fast path
// (an inlineCall, or a servedCall for another node: rpc_served.go), ended
// from the target's read loop rather than by a waiting goroutine.
type inlineRelay interface {
	progressSink
	// response ends the call with the target's response frame.
	response(f *protocol.Frame)
	// result ends the call with the target's successful answer, read by
	// protocol.ScanResult: res aliases the read buffer, valid until
	// result returns.
	result(res json.RawMessage)
	targetGone()
}

// relayResponse hands a response that no waiting channel claimed to the
// fast-path call it answers; it reports whether there was one.
func (r *rpcRelay) relayResponse(c *Conn, f *protocol.Frame) bool {
	ic := r.inlineCallOf(c, []byte(f.ID))
	if ic == nil {
		return false
	}
	ic.response(f)
	return true
}

// relayResult hands a successful response, read by protocol.ScanResult
// from c's read buffer, to the fast-path call it answers; false, for any
// other response, leaves the frame to protocol.Decode and Conn.response.
// Fast-path calls and waiting channels have distinct request ids.
func (r *rpcRelay) relayResult(c *Conn, id []byte, res json.RawMessage) bool {
	ic := r.inlineCallOf(c, id)
	if ic == nil {
		return false
	}
	ic.result(res)
	return true
}

// inlineCallOf returns the fast-path call relayed to c as request id.
func (r *rpcRelay) inlineCallOf(c *Conn, id []byte) inlineRelay {
	s := serverOf(c)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	ic, _ := s.relays[string(id)].(inlineRelay)
	s.mu.Unlock()
	return ic
}

// callerClosed ends the fast-path calls of a caller whose connection
// closed; Async calls see Conn.Done themselves.
func (r *rpcRelay) callerClosed(c *Conn) {
	calls, _ := c.Value(rpcCallsKey{}).(*rpcCalls)
	if calls == nil {
		return
	}
	var ended []inlineCaller
	calls.mu.Lock()
	for _, e := range calls.calls {
		if e.inline != nil {
			ended = append(ended, e.inline)
		}
	}
	calls.mu.Unlock()
	for _, ic := range ended {
		ic.cancel(errCallerGone)
	}
}

// targetClosed ends the fast-path calls relayed to a serving connection
// that closed.
func (s *rpcServer) targetClosed() {
	var ended []inlineRelay
	s.mu.Lock()
	for _, sink := range s.relays {
		if ic, ok := sink.(inlineRelay); ok {
			ended = append(ended, ic)
		}
	}
	s.mu.Unlock()
	for _, ic := range ended {
		ic.targetGone()
	}
}

// requestFrame is the prepared text frame of a request relayed to a target
// (params {} when empty), built in place in a buffer of its size: one
// allocation, no copy.
func requestFrame(id, method string, params json.RawMessage, caller *protocol.Caller) ([]byte, error) {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	// What the frame holds besides its strings and params (more when a
	// string needs escaping: append grows the buffer then).
	const frameRest = len(`{"type":"req","id":"","method":"","params":,"meta":{"caller":{"userId":"","deviceId":"","appId":""}}}`)
	b := make([]byte, ws.FrameHeaderRoom, ws.FrameHeaderRoom+frameRest+len(id)+len(method)+len(params)+
		len(caller.UserID)+len(caller.DeviceID)+len(caller.AppID))
	b, err := protocol.AppendRequest(b, id, method, params, "", &protocol.Meta{Caller: caller})
	if err != nil {
		return nil, err
	}
	return ws.PrepareTextAt(b), nil
}
