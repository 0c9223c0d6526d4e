package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Events and methods of the RPC relay (see docs/rpc.md).
const (
	EventRPCProgress = protocol.EventRPCProgress
	EventRPCCancel   = protocol.EventRPCCancel
	// eventRPCBarrier is an event the client makes up (it never comes from
	// the server): CallDevice queues it behind the progress events of a
	// call to learn when they have all been handled. "*" handlers see it
	// and should ignore it.
	eventRPCBarrier = "client.rpc.barrier"
)

// RPCRequest is a call relayed to this client by the gateway (see Serve).
type RPCRequest struct {
	// ID is the gateway's id of the relayed request on this connection;
	// the rpc.progress and rpc.cancel events name it.
	ID     string
	Method string
	// Params is the caller's params, a JSON object (never empty: "{}").
	Params json.RawMessage
	// Caller is who is calling, as the gateway authenticated them.
	Caller protocol.Caller

	c *Client
}

// Decode decodes the params into v.
func (r *RPCRequest) Decode(v any) error {
	if len(r.Params) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Params, v); err != nil {
		return protocol.Errorf(protocol.CodeBadRequest, "params: %s", err)
	}
	return nil
}

// Progress sends data (encoded as JSON) to the caller as an rpc.progress
// event, before the final result. Progress sent after the handler returned
// is dropped by the gateway.
func (r *RPCRequest) Progress(ctx context.Context, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("client: encode progress: %w", err)
	}
	// protocol.RPCProgress, without reflection.
	b := protocol.AppendString([]byte(`{"id":`), r.ID)
	b = append(b, `,"data":`...)
	b = append(append(b, raw...), '}')
	return r.c.Send(ctx, &protocol.Frame{Type: protocol.TypeEvent, Event: EventRPCProgress, Data: b})
}

// RPCHandler serves one relayed call. Its result is encoded as JSON; a
// *protocol.Error in its error chain reaches the caller with its code, any
// other error as "internal". ctx is canceled when the caller cancels, the
// call times out, or the connection ends.
type RPCHandler func(ctx context.Context, req *RPCRequest) (any, error)

// rpcState is a client's RPC state, created by the first Serve or
// CallDevice and forgotten when the client closes.
type rpcState struct {
	c *Client

	mu       sync.Mutex
	methods  []string                          // guarded by mu: served methods, registered after every connect
	inflight map[string]*servedCall            // guarded by mu: served calls by relayed id
	progress map[string]func(json.RawMessage)  // guarded by mu: CallDevice progress callbacks by request id
	barriers map[*protocol.Frame]chan struct{} // guarded by mu
}

type servedCall struct{ cancel context.CancelCauseFunc }

var rpcStates sync.Map // *Client → *rpcState

var errRPCCancelled = errors.New("client: call cancelled by the gateway")

func (c *Client) rpc() *rpcState {
	if v, ok := rpcStates.Load(c); ok {
		return v.(*rpcState)
	}
	st := &rpcState{
		c:        c,
		inflight: map[string]*servedCall{},
		progress: map[string]func(json.RawMessage){},
		barriers: map[*protocol.Frame]chan struct{}{},
	}
	v, loaded := rpcStates.LoadOrStore(c, st)
	if loaded {
		return v.(*rpcState)
	}
	context.AfterFunc(c.ctx, func() { rpcStates.Delete(c) })
	c.OnEvent(EventRPCCancel, st.onCancel)
	c.OnEvent(EventRPCProgress, st.onProgress)
	c.OnEvent(eventRPCBarrier, st.onBarrier)
	c.OnConnect(st.onConnect)
	return st
}

// Serve serves method for callers relayed by the gateway (machines, or
// devices whose token holds scope rpc.serve). The method is registered with
// rpc.register now when the client is connected, and again after every
// reconnect. Serve returns the registration's error; before Connect, or
// while reconnecting, it returns nil and the registration happens on
// connect.
func (c *Client) Serve(method string, handler RPCHandler) error {
	if c == nil {
		return ErrNilClient
	}
	st := c.rpc()
	c.Handle(method, func(ctx context.Context, f *protocol.Frame) (any, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		sc := &servedCall{cancel: cancel}
		st.mu.Lock()
		st.inflight[f.ID] = sc
		st.mu.Unlock()
		defer func() {
			st.mu.Lock()
			if st.inflight[f.ID] == sc {
				delete(st.inflight, f.ID)
			}
			st.mu.Unlock()
		}()
		req := &RPCRequest{ID: f.ID, Method: f.Method, Params: f.Params, c: c}
		if f.Meta != nil && f.Meta.Caller != nil {
			req.Caller = *f.Meta.Caller
		}
		return handler(ctx, req)
	})
	st.mu.Lock()
	st.methods = append(st.methods, method)
	st.mu.Unlock()
	if c.State() != StateConnected {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.CallTimeout)
	defer cancel()
	return c.Call(ctx, "rpc.register", protocol.RPCRegisterParams{Methods: []string{method}}, nil)
}

// onConnect registers every served method on a new connection.
func (st *rpcState) onConnect(ctx context.Context, c *Client, _ bool) {
	st.mu.Lock()
	methods := append([]string(nil), st.methods...)
	st.mu.Unlock()
	if len(methods) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if err := c.Call(ctx, "rpc.register", protocol.RPCRegisterParams{Methods: methods}, nil); err != nil {
		c.log.Error("client: register served methods", "err", err)
	}
}

func (st *rpcState) onCancel(f *protocol.Frame) {
	var d protocol.RPCCancel
	if json.Unmarshal(f.Data, &d) != nil {
		return
	}
	st.mu.Lock()
	sc := st.inflight[d.ID]
	st.mu.Unlock()
	if sc != nil {
		sc.cancel(errRPCCancelled)
	}
}

func (st *rpcState) onProgress(f *protocol.Frame) {
	var d protocol.RPCProgress
	if json.Unmarshal(f.Data, &d) != nil {
		return
	}
	st.mu.Lock()
	fn := st.progress[d.ID]
	st.mu.Unlock()
	if fn != nil {
		fn(d.Data)
	}
}

func (st *rpcState) onBarrier(f *protocol.Frame) {
	st.mu.Lock()
	ch := st.barriers[f]
	delete(st.barriers, f)
	st.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// barrier waits until the events read before it was called have been
// handled.
func (st *rpcState) barrier(ctx context.Context) {
	f := &protocol.Frame{Type: protocol.TypeEvent, Event: eventRPCBarrier}
	ch := make(chan struct{})
	st.mu.Lock()
	st.barriers[f] = ch
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.barriers, f)
		st.mu.Unlock()
	}()
	select {
	case st.c.events <- inItem{f: f}:
	case <-ctx.Done():
		return
	case <-st.c.ctx.Done():
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	case <-st.c.ctx.Done():
	}
}

// CallOption configures a CallDevice.
type CallOption func(*callOptions)

type callOptions struct {
	progress func(json.RawMessage)
	timeout  time.Duration
}

// WithProgress makes fn receive the data of the rpc.progress events of the
// call, in order, on the client's event goroutine (see OnEvent). CallDevice
// returns after fn has handled every progress event that came before the
// result.
func WithProgress(fn func(data json.RawMessage)) CallOption {
	return func(o *callOptions) { o.progress = fn }
}

// WithCallTimeout sets the call's timeout at the gateway (timeoutMs). Default:
// the time left before ctx's deadline, or Options.CallTimeout.
func WithCallTimeout(d time.Duration) CallOption {
	return func(o *callOptions) { o.timeout = d }
}

// appendRPCCall appends the rpc.call request id: what json.Marshal of
// {target:{deviceId}, method, params, timeoutMs} writes, without its
// reflection. params is compact JSON or empty (omitted).
func appendRPCCall(dst []byte, id, deviceID, method string, params json.RawMessage, timeoutMs int64) []byte {
	dst = append(dst, `{"type":"req","id":`...)
	dst = protocol.AppendString(dst, id)
	dst = append(dst, `,"method":"rpc.call","params":{"target":{"deviceId":`...)
	dst = protocol.AppendString(dst, deviceID)
	dst = append(dst, `},"method":`...)
	dst = protocol.AppendString(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	dst = append(dst, `,"timeoutMs":`...)
	dst = strconv.AppendInt(dst, timeoutMs, 10)
	return append(dst, "}}"...)
}

// CallDevice calls method on the device deviceID through the gateway
// (rpc.call) and decodes the result into result when it is non-nil. Errors
// of the target, and of the gateway (forbidden, unknown_method, timeout,
// unavailable...), are returned as *protocol.Error with their code.
//
// When ctx ends first, the gateway is told with rpc.cancel (the target
// receives an rpc.cancel event) and CallDevice returns ctx.Err().
func (c *Client) CallDevice(ctx context.Context, deviceID, method string, params any, result any, opts ...CallOption) error {
	if c == nil {
		return ErrNilClient
	}
	var o callOptions
	for _, fn := range opts {
		fn(&o)
	}
	raw, err := encodeParams(method, params)
	if err != nil {
		return err
	}
	timeout := o.timeout
	if timeout <= 0 {
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		} else {
			timeout = c.opts.CallTimeout
		}
	}
	cn, err := c.current()
	if err != nil {
		return err
	}
	st := c.rpc()
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	if o.progress != nil {
		st.mu.Lock()
		st.progress[id] = o.progress
		st.mu.Unlock()
		defer func() {
			st.mu.Lock()
			delete(st.progress, id)
			st.mu.Unlock()
		}()
	}
	b := appendRPCCall(make([]byte, 0, 128+len(deviceID)+len(method)+len(raw)), id, deviceID, method, raw,
		max(timeout.Milliseconds(), 1))
	if limit := cn.maxFrame.Load(); int64(len(b)) > limit {
		return protocol.Errorf(protocol.CodeTooLarge, "request of %d bytes is over the server's limit of %d", len(b), limit)
	}
	ch := make(chan *protocol.Frame, 1)
	cn.mu.Lock()
	cn.pending[id] = ch
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
	}()
	// The gateway answers timeout itself; the local bound (a timer, not a
	// derived context: this is the SDK's hot path) only covers a gateway
	// that went silent.
	bound := timeout + 5*time.Second
	deadline := time.Now().Add(bound)
	boundTimer := time.NewTimer(bound)
	defer boundTimer.Stop()
	select {
	case cn.out <- outMsg{b: b}: // room in the queue: the common case
	default:
		qctx, cancel := context.WithDeadlineCause(ctx, deadline, context.DeadlineExceeded)
		err := cn.enqueue(qctx, b)
		cancel()
		if err != nil {
			return c.connErr(err)
		}
	}
	var f *protocol.Frame
	select {
	case f = <-ch:
	case <-cn.ctx.Done():
		select {
		case f = <-ch:
		default:
			return c.connErr(errConnDone)
		}
	case <-ctx.Done():
		c.sendRPCCancel(cn, id)
		return ctx.Err()
	case <-boundTimer.C:
		c.sendRPCCancel(cn, id)
		return context.DeadlineExceeded
	}
	if o.progress != nil {
		bctx, cancel := context.WithDeadline(ctx, deadline)
		st.barrier(bctx)
		cancel()
	}
	if !f.OK {
		return f.Error
	}
	if result != nil && len(f.Result) > 0 {
		if err := json.Unmarshal(f.Result, result); err != nil {
			return fmt.Errorf("client: decode result of %s: %w", method, err)
		}
	}
	return nil
}

// sendRPCCancel asks the gateway to cancel the rpc.call id; its answer is
// not awaited (the client drops it).
func (c *Client) sendRPCCancel(cn *conn, id string) {
	params, _ := json.Marshal(protocol.RPCCancelParams{ID: id})
	b, err := protocol.AppendRequest(nil, strconv.FormatUint(c.nextID.Add(1), 10), "rpc.cancel", params, "", nil)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, time.Second)
	defer cancel()
	if err := cn.enqueue(ctx, b); err != nil {
		c.log.Debug("client: send rpc.cancel", "err", err)
	}
}
