package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// The caller's side of a cross-node rpc.call without a goroutine of its
// own (rpc_fast.go does the same for a target on this node, rpc_served.go
// for the target's node): when the target is not here and the Directory's
// route cache names its node, the caller's read loop queues the call to
// that node (NodeQueue) and returns; the answer is written to the caller
// from the broker's delivery path (handleNodeMessage). Whichever happens
// first ends the call, exactly once (fwdCall.finish):
//
//   - the node's result, on the delivery path;
//   - the timeout, or a node check that finds the target's node gone or
//     this node's channel re-established since the call left (its answer
//     may have been lost): a timer, every rpcNodeCheck, as forward's
//     ticker;
//   - rpc.cancel from the caller, or the caller's connection closing
//     (callerClosed): rpc.cancel is sent to the target's node.
//
// A route that proves stale (the node answers that the device is not
// there, or the call cannot be queued or sent to it) hands the call to the
// slow path (rpcRelay.call on a hub goroutine, with the remaining time),
// which looks the device up again, waits for it within the offline grace,
// and answers as forward would. Everything else (no cached route, a
// Directory without NodeQueue or RouteCache, this node's channel down) is
// the Async path from the start.

// RouteCache is implemented by a Directory whose route hints (RouteHints)
// can be read without a round trip.
type RouteCache interface {
	// CachedRoute returns the node that DeviceRoute would return without
	// asking the directory, and false when the cache cannot tell (or
	// names this node).
	CachedRoute(deviceID string) (nodeID string, ok bool)
}

// States of a fwdCall.
const (
	fwdWaiting = iota // queued to the target's node, waiting for its result
	fwdHanded         // handed to the slow path (a stale route)
	fwdDone           // answered
)

// fwdCall is one rpc.call forwarded from the caller's read loop.
type fwdCall struct {
	r        *rpcRelay
	q        NodeQueue        // set once
	caller   *Conn            // set once
	callerP  *protocol.Caller // set once
	callID   string           // set once: the caller's request id
	calls    *rpcCalls        // set once
	node     string           // set once: the target's node
	device   string           // set once
	method   string           // set once
	params   json.RawMessage  // set once: a copy, for the slow path
	call     string           // set once: the node call id
	start    time.Time        // set once
	deadline time.Time        // set once
	rx       NodeReceiver     // set once; nil when the Directory is not one
	gen      uint64           // set once: rx's generation when the call left
	timer    *time.Timer

	mu    sync.Mutex
	state int                     // guarded by mu
	stop  context.CancelCauseFunc // guarded by mu: the slow path's, once handed
	cause error                   // guarded by mu: a cancel that came while handing over
}

// startForward starts rpc.call p, whose target is not on this node, on the
// fast path when the route cache knows its node. It reports whether it did
// (the call then answers and releases the request itself).
func (r *rpcRelay) startForward(c *Conn, callID string, p *rpcCallParams) bool {
	q, ok := r.dir.(NodeQueue)
	if !ok {
		return false
	}
	rc, ok := r.dir.(RouteCache)
	if !ok {
		return false
	}
	node, ok := rc.CachedRoute(p.Target.DeviceID)
	if !ok || node == r.node {
		return false
	}
	rx, _ := r.dir.(NodeReceiver)
	var gen uint64
	if rx != nil {
		if gen, ok = rx.Receiving(); !ok {
			return false // the Async path answers that no answer can arrive now
		}
	}
	timeout := r.cfg.DefaultTimeout
	if p.TimeoutMs > 0 {
		timeout = min(time.Duration(p.TimeoutMs)*time.Millisecond, r.cfg.MaxTimeout)
	}
	now := time.Now()
	fc := &fwdCall{r: r, q: q, caller: c, callerP: callerOf(c.Principal()), callID: callID, calls: r.callsOf(c),
		node: node, device: p.Target.DeviceID, method: p.Method, params: bytes.Clone(p.Params),
		call: r.nextCallID(), start: now, deadline: now.Add(timeout), rx: rx, gen: gen}
	msg, err := marshalNodeMsg(&nodeMsg{Kind: nodeCall, From: r.node, Call: fc.call, Device: fc.device,
		Method: fc.method, Params: fc.params, Caller: fc.callerP, TimeoutMs: max(timeout.Milliseconds(), 1)})
	if err != nil {
		return false
	}
	// The timer exists before the call can be found (finish stops it) and
	// runs only once the call is registered.
	fc.timer = time.AfterFunc(time.Hour, fc.tick)
	fc.calls.mu.Lock()
	fc.calls.calls[callID] = rpcCallEntry{inline: fc}
	fc.calls.mu.Unlock()
	r.mu.Lock()
	r.remote[fc.call] = &remoteCall{fast: fc, sink: &callerSink{r: r, conn: c, id: callID}}
	r.mu.Unlock()
	fc.timer.Reset(min(timeout, rpcNodeCheck))
	if q.QueueToNode(node, msg, fc.sent) {
		r.metrics.forwardedInline.Inc()
		return true
	}
	// Not queued (the queue is full, the broker closing): unless something
	// ended the call already, the Async path takes it from the start.
	fc.mu.Lock()
	if fc.state != fwdWaiting {
		fc.mu.Unlock()
		return true
	}
	fc.state = fwdDone
	fc.mu.Unlock()
	fc.release()
	return false
}

// release stops the timer and forgets the call.
func (fc *fwdCall) release() {
	fc.timer.Stop()
	fc.forgetRemote()
	fc.calls.mu.Lock()
	if fc.calls.calls[fc.callID].inline == inlineCaller(fc) {
		delete(fc.calls.calls, fc.callID)
	}
	fc.calls.mu.Unlock()
}

// forgetRemote drops the node call id: a result for it is dropped.
func (fc *fwdCall) forgetRemote() {
	fc.r.mu.Lock()
	if rc := fc.r.remote[fc.call]; rc != nil && rc.fast == fc {
		delete(fc.r.remote, fc.call)
	}
	fc.r.mu.Unlock()
}

// end moves a waiting call to done; it reports whether it was waiting.
func (fc *fwdCall) end() bool {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.state != fwdWaiting {
		return false
	}
	fc.state = fwdDone
	return true
}

// finish answers a waiting call with res or err, once; cancelRemote tells
// the target's node to stop it.
func (fc *fwdCall) finish(res json.RawMessage, err error, cancelRemote bool) {
	if !fc.end() {
		return
	}
	fc.release()
	if cancelRemote {
		fc.cancelRemote()
	}
	fc.answer(res, err, "remote")
}

// answer sends the caller its answer and releases the request.
func (fc *fwdCall) answer(res json.RawMessage, err error, path string) {
	r, c, h := fc.r, fc.caller, fc.r.h
	if err != nil {
		pe := protocol.AsError(err)
		if pe.Code == protocol.CodeInternal {
			p := c.Principal()
			h.log.Error("method failed", "method", r.callMethod.Name, "conn", c.id, "user", p.UserID, "device", p.DeviceID, "err", err)
		}
		c.sendError(fc.callID, pe)
	} else {
		c.sendResult(fc.callID, res)
	}
	if err == nil && path == "local" {
		r.metrics.okLocal.Inc()
	} else {
		r.metrics.calls.WithLabelValues(outcome(err), path).Inc()
	}
	h.metrics.methodSeconds.WithLabelValues(r.callMethod.Name, outcome(err)).Observe(time.Since(fc.start).Seconds())
	c.mu.Lock()
	c.async--
	c.mu.Unlock()
	h.inflight.Done()
}

// cancelRemote queues rpc.cancel to the target's node (best effort: the
// node also gives up at its own deadline).
func (fc *fwdCall) cancelRemote() {
	b, err := marshalNodeMsg(&nodeMsg{Kind: nodeCancel, From: fc.r.node, Call: fc.call})
	if err == nil && !fc.q.QueueToNode(fc.node, b, nil) {
		fc.r.h.log.Debug("rpc: forward cancel not queued", "node", fc.node)
	}
}

// result takes the node's result, on the broker's delivery path.
func (fc *fwdCall) result(m *nodeMsg) {
	res, miss, err := fc.r.forwardResult(m)
	if miss == missOffline {
		fc.r.staleRoute(fc.device, fc.node, false)
		fc.handOver()
		return
	}
	fc.finish(res, err, false)
}

// sent is QueueToNode's report: a call that could not be sent goes to the
// slow path, which looks the device up again (as forward's sendFailed).
func (fc *fwdCall) sent(err error) {
	if err == nil {
		return
	}
	fc.r.h.log.Warn("rpc: forward to node", "node", fc.node, "err", err)
	fc.r.staleRoute(fc.device, fc.node, true)
	fc.handOver()
}

// tick runs on the timer: the timeout, else the node checks (on a hub
// goroutine: they may ask the directory), then the next tick.
func (fc *fwdCall) tick() {
	left := time.Until(fc.deadline)
	if left <= 0 {
		fc.finish(nil, protocol.Errorf(protocol.CodeTimeout, "the target did not answer in time"), true)
		return
	}
	fc.r.h.Go(func(ctx context.Context) {
		if fc.rx != nil {
			if g, ok := fc.rx.Receiving(); !ok || g != fc.gen {
				// This node's channel broke since the call left: its
				// answer may have been lost.
				if fc.end() {
					fc.release()
					fc.cancelRemote()
					fc.r.metrics.lostAnswers.Inc()
					fc.r.h.log.Warn("rpc: this node's channel broke while a forwarded call waited", "node", fc.node)
					fc.answer(nil, errNoAnswerChannel(), "remote")
				}
				return
			}
		}
		if alive, err := fc.r.dir.NodeAlive(ctx, fc.node); err == nil && !alive {
			fc.r.h.log.Warn("rpc: the target's node is gone", "node", fc.node)
			fc.finish(nil, protocol.Errorf(protocol.CodeUnavailable, "the target's node is gone"), false)
			return
		}
		fc.mu.Lock()
		if fc.state == fwdWaiting {
			fc.timer.Reset(min(time.Until(fc.deadline), rpcNodeCheck))
		}
		fc.mu.Unlock()
	})
}

// cancel implements inlineCaller.
func (fc *fwdCall) cancel(cause error) {
	fc.mu.Lock()
	switch fc.state {
	case fwdHanded:
		// The slow path sees the caller's close itself (Conn.Done).
		var stop context.CancelCauseFunc
		switch {
		case cause == errCallerGone:
		case fc.stop != nil:
			stop = fc.stop
		case fc.cause == nil:
			fc.cause = cause // the slow path takes it when it starts
		}
		fc.mu.Unlock()
		if stop != nil {
			stop(cause)
		}
		return
	case fwdDone:
		fc.mu.Unlock()
		return
	}
	fc.mu.Unlock()
	if cause == errCallerGone {
		fc.finish(nil, protocol.Errorf(protocol.CodeUnavailable, "caller disconnected"), true)
		return
	}
	e := protocol.Errorf(protocol.CodeTimeout, "cancelled")
	e.Retryable = false
	fc.finish(nil, e.WithDetail("cancelled", true), true)
}

// handOver gives a waiting call to the slow path, with the time it has
// left: rpcRelay.call on a hub goroutine, as handleCall would run it.
func (fc *fwdCall) handOver() {
	fc.mu.Lock()
	if fc.state != fwdWaiting {
		fc.mu.Unlock()
		return
	}
	fc.state = fwdHanded
	fc.mu.Unlock()
	fc.timer.Stop()
	fc.forgetRemote()
	r := fc.r
	r.h.Go(func(ctx context.Context) {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		t := time.AfterFunc(time.Until(fc.deadline), func() { cancel(errRPCTimeout) })
		defer t.Stop()
		fc.mu.Lock()
		fc.stop = cancel
		cause := fc.cause
		fc.mu.Unlock()
		if cause != nil {
			cancel(cause)
		}
		sink := &callerSink{r: r, conn: fc.caller, id: fc.callID}
		res, path, err := r.call(deadlineCtx{Context: ctx, deadline: fc.deadline}, fc.caller.Done(), fc.callerP, fc.device, fc.method, fc.params, sink)
		fc.mu.Lock()
		fc.state = fwdDone
		fc.mu.Unlock()
		fc.release()
		fc.answer(res, err, path)
	})
}
