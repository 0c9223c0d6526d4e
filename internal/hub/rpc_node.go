package hub

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Node messages of the RPC relay, carried by Directory.SendToNode between the
// node of a caller (the origin) and the node holding the target. Every
// message is one JSON object (encoded and decoded without reflection by
// rpc_codec.go, falling back to encoding/json):
//
//	origin → target node
//	  {"kind":"rpc.call","from":"n1","call":"n1/17","device":"d1","method":"files.read",
//	   "params":{...},"caller":{"userId":..,"deviceId":..},"timeoutMs":29950}
//	  {"kind":"rpc.list","from":"n1","call":"n1/18","device":"d1","caller":{...},"timeoutMs":...}
//	  {"kind":"rpc.cancel","from":"n1","call":"n1/17"}
//	target node → origin
//	  {"kind":"rpc.progress","call":"n1/17","data":{...}}
//	  {"kind":"rpc.result","call":"n1/17","result":{...}}
//	  {"kind":"rpc.result","call":"n1/17","error":{"code":..,"message":..}}
//	  {"kind":"rpc.result","call":"n1/17","offline":true}   (the device is not here: wait or fail)
//
// The call id starts with the origin's node id, so it is unique in the
// cluster; progress and results for an id nobody waits for are dropped.
type nodeMsg struct {
	Kind      string           `json:"kind"`
	From      string           `json:"from,omitempty"`
	Call      string           `json:"call"`
	Device    string           `json:"device,omitempty"`
	Method    string           `json:"method,omitempty"`
	Params    json.RawMessage  `json:"params,omitempty"`
	Caller    *protocol.Caller `json:"caller,omitempty"`
	TimeoutMs int64            `json:"timeoutMs,omitempty"`
	Data      json.RawMessage  `json:"data,omitempty"`
	Result    json.RawMessage  `json:"result,omitempty"`
	Error     *protocol.Error  `json:"error,omitempty"`
	Offline   bool             `json:"offline,omitempty"`
	Gen       uint64           `json:"gen,omitempty"`
}

// Kinds of node messages.
const (
	nodeCall     = "rpc.call"
	nodeList     = "rpc.list"
	nodeCancel   = "rpc.cancel"
	nodeProgress = "rpc.progress"
	nodeResult   = "rpc.result"
)

// rpcNodeCheck is how often a forwarded call in flight checks that the
// target's node is still alive (Directory.NodeAlive).
const rpcNodeCheck = time.Second

// maxServedRemote bounds the calls other nodes forward to this one at once.
const maxServedRemote = 10_000

// remoteCall is a call this node forwarded, waiting for its result.
type remoteCall struct {
	res  chan *nodeMsg // buffered 1: the result (nil for fast)
	sink progressSink  // the caller's progress
	fast *fwdCall      // a call forwarded from the caller's read loop (rpc_forward.go), or nil
}

// forward sends a call (or a listing) to the node holding the target and
// waits for the result. missOffline reports that the target is not there
// (the claim was stale): the caller may wait for it; missUnreachable, with
// an unavailable error, that the node could not be reached.
func (r *rpcRelay) forward(ctx context.Context, done <-chan struct{}, node string, msg *nodeMsg, sink progressSink) (json.RawMessage, routeMiss, error) {
	rx, watchRx := r.dir.(NodeReceiver)
	var gen uint64
	if watchRx {
		var ok bool
		if gen, ok = rx.Receiving(); !ok {
			r.metrics.lostAnswers.Inc()
			return nil, reached, errNoAnswerChannel()
		}
	}
	msg.From = r.node
	msg.Call = r.nextCallID()
	if dl, ok := ctx.Deadline(); ok {
		msg.TimeoutMs = max(time.Until(dl).Milliseconds(), 1)
	}
	rc := &remoteCall{res: make(chan *nodeMsg, 1), sink: sink}
	r.mu.Lock()
	r.remote[msg.Call] = rc
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.remote, msg.Call)
		r.mu.Unlock()
	}()
	sendFailed := func(err error) (json.RawMessage, routeMiss, error) {
		if ctx.Err() != nil {
			return nil, reached, r.ctxErr(ctx, false)
		}
		r.h.log.Warn("rpc: forward to node", "node", node, "err", err)
		return nil, missUnreachable, protocol.Errorf(protocol.CodeUnavailable, "the target's node is unreachable")
	}
	// Queued without waiting for the PUBLISH when the Directory can
	// (NodeQueue): its failure, if any, comes while the call waits.
	notSent, err := r.queueNode(ctx, node, msg)
	if err != nil {
		return sendFailed(err)
	}
	cancelRemote := func() {
		// Best effort: the target node also gives up at its own deadline.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := r.sendNode(cctx, node, &nodeMsg{Kind: nodeCancel, From: r.node, Call: msg.Call}); err != nil {
			r.h.log.Debug("rpc: forward cancel", "node", node, "err", err)
		}
	}
	// A node that dies never answers: its node lease is checked while the
	// call waits, so that the call fails within the lease's ttl (plus a
	// check) rather than at its timeout.
	check := time.NewTicker(rpcNodeCheck)
	defer check.Stop()
	for {
		select {
		case <-check.C:
			if watchRx {
				if g, ok := rx.Receiving(); !ok || g != gen {
					// This node's channel broke since the call left: its
					// answer may have been lost. (One that arrived is
					// taken first, below, on the next loop.)
					select {
					case m := <-rc.res:
						return r.forwardResult(m)
					default:
					}
					cancelRemote()
					r.metrics.lostAnswers.Inc()
					r.h.log.Warn("rpc: this node's channel broke while a forwarded call waited", "node", node)
					return nil, reached, errNoAnswerChannel()
				}
			}
			alive, err := r.dir.NodeAlive(ctx, node)
			if err != nil || alive {
				continue // unknown (the broker is unreachable from here), or alive: wait on
			}
			r.h.log.Warn("rpc: the target's node is gone", "node", node)
			return nil, reached, protocol.Errorf(protocol.CodeUnavailable, "the target's node is gone")
		case m := <-rc.res:
			return r.forwardResult(m)
		case err := <-notSent:
			return sendFailed(err)
		case <-ctx.Done():
			cancelRemote()
			return nil, reached, r.ctxErr(ctx, false)
		case <-done:
			cancelRemote()
			return nil, reached, protocol.Errorf(protocol.CodeUnavailable, "caller disconnected")
		}
	}
}

// errNoAnswerChannel: this node's channel is down (reconnecting to the
// broker), so the answer of a forwarded call cannot arrive, or may have
// been lost.
func errNoAnswerChannel() *protocol.Error {
	return protocol.Errorf(protocol.CodeUnavailable, "this node cannot receive answers from other nodes now (reconnecting to the broker)")
}

// forwardResult reads the result of a forwarded call.
func (r *rpcRelay) forwardResult(m *nodeMsg) (json.RawMessage, routeMiss, error) {
	switch {
	case m.Offline:
		return nil, missOffline, nil
	case m.Error != nil:
		if !knownCode(m.Error.Code) {
			return nil, reached, errMalformedResponse()
		}
		return nil, reached, m.Error
	case len(m.Result) == 0:
		return json.RawMessage("null"), reached, nil
	}
	return m.Result, reached, nil
}

// queueNode sends msg to node: queued without waiting when the Directory
// is a NodeQueue with room (a failure to send then arrives on notSent),
// otherwise by SendToNode (bounded by ctx), whose failure is err.
func (r *rpcRelay) queueNode(ctx context.Context, node string, msg *nodeMsg) (notSent <-chan error, err error) {
	b, err := marshalNodeMsg(msg)
	if err != nil {
		return nil, err
	}
	if q, ok := r.dir.(NodeQueue); ok {
		ch := make(chan error, 1)
		if q.QueueToNode(node, b, func(err error) {
			if err != nil {
				ch <- err
			}
		}) {
			return ch, nil
		}
	}
	return nil, r.dir.SendToNode(ctx, node, b)
}

func (r *rpcRelay) sendNode(ctx context.Context, node string, msg *nodeMsg) error {
	b, err := marshalNodeMsg(msg)
	if err != nil {
		return err
	}
	return r.dir.SendToNode(ctx, node, b)
}

// handleNodeMessage handles a node message; it runs on the broker's
// delivery path, so anything that waits runs on a goroutine of the hub.
func (r *rpcRelay) handleNodeMessage(raw json.RawMessage) {
	var m nodeMsg
	if err := unmarshalNodeMsg(raw, &m); err != nil || m.Call == "" {
		r.h.log.Warn("rpc: bad node message", "err", err)
		return
	}
	switch m.Kind {
	case nodeReplaced:
		r.deviceReplaced(&m)
	case nodeCall, nodeList:
		if r.h.closed.Load() {
			return // the origin times out
		}
		if r.servedRemote.Add(1) > maxServedRemote {
			r.servedRemote.Add(-1)
			e := protocol.Errorf(protocol.CodeRateLimited, "too many relayed calls on the target's node")
			r.h.Go(func(ctx context.Context) { r.reply(ctx, &m, &nodeMsg{Kind: nodeResult, Call: m.Call, Error: e}) })
			return
		}
		if r.serveFast(&m) {
			return // rpc_served.go
		}
		r.h.Go(func(ctx context.Context) {
			defer r.servedRemote.Add(-1)
			r.serveRemote(ctx, &m)
		})
	case nodeCancel:
		r.mu.RLock()
		cancel := r.served[m.From+"|"+m.Call]
		r.mu.RUnlock()
		if cancel != nil {
			cancel(errRPCCancelled)
		}
	case nodeProgress:
		r.mu.RLock()
		rc := r.remote[m.Call]
		r.mu.RUnlock()
		if rc == nil || rc.sink == nil {
			r.metrics.dropped.Inc()
			return
		}
		rc.sink.progress(m.Data)
	case nodeResult:
		r.mu.RLock()
		rc := r.remote[m.Call]
		r.mu.RUnlock()
		if rc != nil && rc.fast != nil {
			rc.fast.result(&m)
			return
		}
		if rc != nil {
			select {
			case rc.res <- &m:
			default: // a duplicate result
			}
		}
	default:
		r.h.log.Warn("rpc: unknown node message", "kind", m.Kind)
	}
}

// serveRemote runs a call forwarded by another node against a target
// connected here, and sends the result back.
func (r *rpcRelay) serveRemote(ctx context.Context, m *nodeMsg) {
	key := m.From + "|" + m.Call
	base, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := r.cfg.DefaultTimeout
	if m.TimeoutMs > 0 {
		timeout = min(time.Duration(m.TimeoutMs)*time.Millisecond, r.cfg.MaxTimeout)
	}
	// One context, its timeout a timer (as CallDevice): a second context
	// per served call showed in a machine node's profile.
	t := time.AfterFunc(timeout, func() { cancel(errRPCTimeout) })
	defer t.Stop()
	cctx := deadlineCtx{Context: base, deadline: time.Now().Add(timeout)}
	r.mu.Lock()
	r.served[key] = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.served, key)
		r.mu.Unlock()
	}()

	out := &nodeMsg{Kind: nodeResult, Call: m.Call}
	s := r.localServer(m.Device)
	caller := m.Caller
	if caller == nil {
		caller = &protocol.Caller{}
	}
	switch {
	case s == nil:
		out.Offline = true
	case m.Kind == nodeList:
		res, err := r.listLocal(caller, s)
		if err != nil {
			out.Error = protocol.AsError(err)
		} else if out.Result, err = json.Marshal(res); err != nil {
			out.Error = protocol.AsError(nil)
		}
	default:
		sink := &remoteSink{r: r, ctx: cctx, origin: m.From, call: m.Call, wakeCh: make(chan struct{}, 1)}
		res, offline, err := r.deliverLocal(cctx, nil, caller, s, m.Method, m.Params, sink)
		r.metrics.calls.WithLabelValues(outcome(err), "served").Inc()
		switch {
		case offline:
			out.Offline = true
		case err != nil:
			out.Error = protocol.AsError(err)
		default:
			out.Result = res
		}
	}
	if errors.Is(context.Cause(cctx), errRPCCancelled) {
		return // the origin stopped waiting
	}
	r.reply(ctx, m, out)
}

func (r *rpcRelay) reply(ctx context.Context, m *nodeMsg, out *nodeMsg) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.sendNode(ctx, m.From, out); err != nil {
		r.h.log.Warn("rpc: reply to node", "node", m.From, "err", err)
	}
}

// maxRemoteProgress bounds the progress of one forwarded call waiting to
// be sent to its origin; more is dropped (counted).
const maxRemoteProgress = 256

// remoteSink queues a forwarded call's progress from the target's read
// loop and sends it to the origin from the relaying goroutine, before the
// result, so that the read loop never waits on the broker. (A slice under
// a mutex and a wake-up rather than a channel of maxRemoteProgress: a call
// without progress, the common case, allocates no buffer.)
type remoteSink struct {
	r      *rpcRelay
	ctx    context.Context
	origin string
	call   string
	wakeCh chan struct{} // cap 1: progress is pending

	mu      sync.Mutex
	pending []json.RawMessage // guarded by mu: at most maxRemoteProgress
}

func (s *remoteSink) progress(data json.RawMessage) {
	s.mu.Lock()
	if len(s.pending) >= maxRemoteProgress {
		s.mu.Unlock()
		s.r.metrics.dropped.Inc()
		return
	}
	s.pending = append(s.pending, data)
	s.mu.Unlock()
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

func (s *remoteSink) wake() <-chan struct{} { return s.wakeCh }

func (s *remoteSink) flush() {
	s.mu.Lock()
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, data := range pending {
		if err := s.r.sendNode(s.ctx, s.origin, &nodeMsg{Kind: nodeProgress, Call: s.call, Data: data}); err != nil {
			s.r.metrics.dropped.Inc()
		}
	}
}
