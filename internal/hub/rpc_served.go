package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// The fast path of a call another node forwarded here (the target node's
// side of rpc_node.go): when the Directory can queue node messages without
// waiting (NodeQueue) and the call can go to its target at once (the
// device is connected here, serves the method, and the caller may make
// it), the request leaves from the broker's delivery path and the result
// is queued back to the origin from the target's read loop: no goroutine
// per served call, nobody waiting for the PUBLISH. As for the fast path of
// a local call (rpc_fast.go), whichever happens first ends the call,
// exactly once (servedCall.finish):
//
//   - the target's response (relayResponse) or a malformed one
//     (failPendingResponse): the result goes back;
//   - the timeout (its queue's timer: rpc_timeout.go): the target gets
//     rpc.cancel, the origin a timeout error;
//   - rpc.cancel from the origin (handleNodeMessage, through served): the
//     target gets rpc.cancel, the origin nothing (it stopped waiting);
//   - the target's connection closing (serverClosed): the origin gets
//     unavailable.
//
// Progress is queued to the origin as it comes, before the result (one
// writer per shard keeps a node's messages in order). Anything else — the
// device not here, a listing, a refusal, an unknown method — and any
// Directory without NodeQueue takes serveRemote on a goroutine, which
// answers the same way.

// NodeQueue is implemented by a Directory that can queue a node message
// without waiting for it to be sent (the cluster broker's batching
// writer): messages queued for one node leave in order, after those sent
// or queued before.
type NodeQueue interface {
	// QueueToNode queues msg for nodeID and returns at once. sent, if not
	// nil, gets what SendToNode would have returned once that is known; it
	// must not block. QueueToNode reports false, queueing nothing, when
	// msg cannot be queued now (the queue is full, the broker closed).
	QueueToNode(nodeID string, msg json.RawMessage, sent func(error)) bool
}

// servedCall is one call served on the fast path.
type servedCall struct {
	r      *rpcRelay
	q      NodeQueue  // set once
	origin string     // set once: the origin's node id
	call   string     // set once: the origin's call id
	key    string     // set once: origin|call, in rpcRelay.served
	srv    *rpcServer // set once: the target's RPC state
	id     string     // set once: the relayed request id
	method string     // set once
	// timeout is the call's place in its timeout queue (rpc_timeout.go).
	timeout timeoutEntry
	done    atomic.Bool // finish ran
}

// serveFast serves m (a forwarded rpc.call) on the fast path when it can;
// false leaves m to serveRemote. It runs on the broker's delivery path.
func (r *rpcRelay) serveFast(m *nodeMsg) bool {
	q, ok := r.dir.(NodeQueue)
	if !ok || m.Kind != nodeCall {
		return false
	}
	s := r.localServer(m.Device)
	if s == nil {
		return false
	}
	caller := m.Caller
	if caller == nil {
		caller = &protocol.Caller{}
	}
	target := s.conn
	if !r.cfg.allowed(caller.UserID, target.Principal().UserID, m.Method) || !s.has(m.Method) {
		return false
	}
	timeout := r.cfg.DefaultTimeout
	if m.TimeoutMs > 0 {
		timeout = min(time.Duration(m.TimeoutMs)*time.Millisecond, r.cfg.MaxTimeout)
	}
	id, ok := target.nextRequestID()
	if !ok {
		return false
	}
	sc := &servedCall{r: r, q: q, origin: m.From, call: m.Call, key: m.From + "|" + m.Call,
		srv: s, id: id, method: m.Method}
	r.mu.Lock()
	r.served[sc.key] = sc.cancel
	r.mu.Unlock()
	s.mu.Lock()
	s.relays[id] = sc
	s.mu.Unlock()
	// The timeout runs only once the call is registered (its end
	// unregisters it); an end that came first found it not queued yet.
	r.timeouts.add(&sc.timeout, sc, timeout)
	if sc.done.Load() {
		r.timeouts.remove(&sc.timeout)
	}

	frame, err := requestFrame(id, m.Method, m.Params, caller)
	if err == nil && target.sendFrame(frame) {
		return true
	}
	// Not sent (the target is closing): unless its close ended the call
	// already, serveRemote takes it (and finds the target offline).
	if !sc.done.CompareAndSwap(false, true) {
		return true
	}
	sc.release()
	return false
}

// release forgets the call and its timeout.
func (sc *servedCall) release() {
	sc.r.timeouts.remove(&sc.timeout)
	sc.srv.mu.Lock()
	if sc.srv.relays[sc.id] == progressSink(sc) {
		delete(sc.srv.relays, sc.id)
	}
	sc.srv.mu.Unlock()
	sc.r.mu.Lock()
	delete(sc.r.served, sc.key)
	sc.r.mu.Unlock()
}

// finish ends the call once: the origin gets out (unless nil), the target
// rpc.cancel when cancelReason is not empty.
func (sc *servedCall) finish(out *nodeMsg, err error, cancelReason string) bool {
	if !sc.done.CompareAndSwap(false, true) {
		return false
	}
	sc.release()
	r := sc.r
	if cancelReason != "" {
		r.cancelTarget(sc.srv.conn, sc.id, cancelReason)
	}
	r.metrics.calls.WithLabelValues(outcome(err), "served").Inc()
	if out != nil {
		out.Kind, out.Call = nodeResult, sc.call
		sc.send(out, true)
	}
	r.servedRemote.Add(-1)
	return true
}

// send queues msg to the origin; a result that cannot be queued now is
// sent from a goroutine (progress is dropped, counted).
func (sc *servedCall) send(msg *nodeMsg, result bool) {
	r := sc.r
	b, err := marshalNodeMsg(msg)
	if err != nil {
		r.h.log.Warn("rpc: reply to node", "node", sc.origin, "err", err)
		return
	}
	if sc.q.QueueToNode(sc.origin, b, func(err error) {
		if err != nil {
			r.h.log.Warn("rpc: reply to node", "node", sc.origin, "err", err)
		}
	}) {
		return
	}
	if !result {
		r.metrics.dropped.Inc()
		return
	}
	r.h.Go(func(ctx context.Context) { r.reply(ctx, &nodeMsg{From: sc.origin}, msg) })
}

// response ends the call with the target's response.
func (sc *servedCall) response(f *protocol.Frame) {
	if sc.done.Load() {
		return
	}
	res, err := sc.r.result(f, sc.srv.conn, sc.method)
	out := &nodeMsg{Result: res}
	if err != nil {
		out = &nodeMsg{Error: protocol.AsError(err)}
	}
	sc.finish(out, err, "")
}

// result ends the call with the target's successful answer; res is
// copied (it aliases the read buffer, and a result that cannot be queued
// at once is sent from a goroutine).
func (sc *servedCall) result(res json.RawMessage) {
	if sc.done.Load() {
		return
	}
	sc.finish(&nodeMsg{Result: okResult(bytes.Clone(res))}, nil, "")
}

func (sc *servedCall) timedOut() {
	e := protocol.Errorf(protocol.CodeTimeout, "the target did not answer in time")
	sc.finish(&nodeMsg{Error: e}, e, e.Message)
}

// cancel is the call's entry in rpcRelay.served: the origin cancelled it
// (errRPCCancelled) and waits no more.
func (sc *servedCall) cancel(cause error) {
	e := protocol.Errorf(protocol.CodeTimeout, "cancelled")
	sc.finish(nil, e, e.Message)
}

// targetGone ends the call when the target's connection closed.
func (sc *servedCall) targetGone() {
	e := protocol.Errorf(protocol.CodeUnavailable, "target disconnected during the call")
	sc.finish(&nodeMsg{Error: e}, e, "")
}

// progress implements progressSink: the target's progress goes to the
// origin, queued in order before the result.
func (sc *servedCall) progress(data json.RawMessage) {
	if sc.done.Load() {
		sc.r.metrics.dropped.Inc()
		return
	}
	sc.send(&nodeMsg{Kind: nodeProgress, Call: sc.call, Data: data}, false)
}

func (sc *servedCall) wake() <-chan struct{} { return nil }
func (sc *servedCall) flush()                {}
