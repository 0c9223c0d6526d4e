package hub

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// Conn is one authenticated WebSocket connection.
//
// Reads arrive on the transport's read loop (OnMessage); Serial requests are
// handled on a goroutine that exists only while the connection has requests
// queued; every outbound frame goes through the transport's bounded queue.
type Conn struct {
	// Every idle connection holds one: TestConnSize keeps it in the
	// 144-byte size class. Fields are ordered so that little is padded;
	// state only some connections need (Value, AfterClose, Done,
	// server→client requests) is in extra.
	hub *Hub // set once at construction

	principal atomic.Pointer[auth.Principal] // replaced by auth.refresh
	ws        atomic.Pointer[ws.Conn]        // set once by attach or the first OnMessage

	state   atomic.Uint32 // connWelcomed, connRegistered, connAdmitted (conn_state.go)
	async   int32         // guarded by mu: Async requests in flight
	since   int64         // set once at construction: when the connection began (Unix ns, Deps.Now)
	compact *compactConn  // set once before the upgrade: the compact codec's state (conn_compact_*.go); nil for protocol v1

	mu      sync.Mutex
	kind    uint8 // set once by welcome: the connection's slot in Hub.kinds
	running bool  // guarded by mu: the inbox goroutine is running
	closed  bool  // guarded by mu
	// expiryWarned is guarded by hub.expiry.mu: token.expiring was sent
	// for the current credential (expiry.go).
	expiryWarned bool
	// id is the connection's id (ID), set once at construction: held in
	// the Conn, beside the four bytes above, it fills what was padding
	// and the string header, where a string cost every connection a
	// 24-byte allocation of its own.
	id    [connIDLen]byte
	inbox []*protocol.Frame // guarded by mu: Serial requests waiting
	rate  auth.Bucket       // guarded by mu: the request rate limit
	subs  *connSubs         // guarded by mu: channel subscriptions, nil before the first (its own field: most connections subscribe)
	claim *deviceClaim      // guarded by mu: the device's claim (claims.go), set once after the welcome; nil without a device
	extra *connExtra        // guarded by mu: created by the first SetValue, AfterClose, Done or server→client request
}

// connExtra is the state of a Conn that most connections never use: an
// idle subscribed connection has none.
type connExtra struct {
	values  []connValue                     // per-connection state of other parts (rpc servers and callers, iot, apps)
	onClose []func(*Conn)                   // run once after close
	pending map[string]chan *protocol.Frame // server→client requests awaiting a response
	nextReq uint64                          // the number of the last server→client request
	done    chan struct{}                   // created by Done, closed on close
}

// nextRequestIDLocked returns the id of a new server→client request. Called
// with c.mu held.
func (c *Conn) nextRequestIDLocked() string {
	x := c.extraLocked()
	x.nextReq++
	var b [24]byte // one allocation, the string's, where "s"+FormatUint made two
	return string(strconv.AppendUint(append(b[:0], 's'), x.nextReq, 10))
}

// addPendingLocked records ch as the waiter of request id. Called with c.mu
// held.
func (c *Conn) addPendingLocked(id string, ch chan *protocol.Frame) {
	x := c.extraLocked()
	if x.pending == nil {
		x.pending = make(map[string]chan *protocol.Frame)
	}
	x.pending[id] = ch
}

// takePendingLocked removes and returns the waiter of request id, or nil.
// Called with c.mu held.
func (c *Conn) takePendingLocked(id string) chan *protocol.Frame {
	if c.extra == nil {
		return nil
	}
	ch := c.extra.pending[id]
	delete(c.extra.pending, id)
	return ch
}

// extraLocked returns c.extra, creating it. Called with c.mu held.
func (c *Conn) extraLocked() *connExtra {
	if c.extra == nil {
		c.extra = &connExtra{}
	}
	return c.extra
}

// connIDLen is the length of a connection id: "c-" and 10 random bytes in
// base32 (16 characters).
const connIDLen = 2 + 16

func newConn(h *Hub, p *auth.Principal) *Conn {
	c := &Conn{hub: h, since: h.deps.Now().UnixNano()}
	var b [10]byte
	_, _ = rand.Read(b[:])
	copy(c.id[:], "c-")
	idEncoding.Encode(c.id[2:], b[:])
	c.principal.Store(p)
	return c
}

// ID returns the connection id announced in its welcome (a new string at
// each call: the bytes are the Conn's).
func (c *Conn) ID() string { return string(c.id[:]) }

// Principal returns who the connection is authenticated as.
func (c *Conn) Principal() *auth.Principal { return c.principal.Load() }

// Hub returns the hub the connection belongs to.
func (c *Conn) Hub() *Hub { return c.hub }

// RemoteAddr returns the peer's address, or nil before attach.
func (c *Conn) RemoteAddr() net.Addr {
	if w := c.ws.Load(); w != nil {
		return w.RemoteAddr()
	}
	return nil
}

// attach is called once the handshake completed; it sends the welcome (if the
// read loop has not already done so) and registers the connection.
func (c *Conn) attach(w *ws.Conn) {
	c.ws.CompareAndSwap(nil, w)
	c.welcome()
}

// welcome sends the welcome event exactly once, before any other frame, and
// then registers the connection.
func (c *Conn) welcome() {
	c.welcomeOnce(func() {
		h := c.hub
		p := c.Principal()
		data := h.welcomeData(c.ID(), p)
		// The event is written after room for the frame header, which goes
		// in front of it: one buffer, where growing one for the event and
		// copying it into the frame took three or four.
		b := make([]byte, ws.FrameHeaderRoom, ws.FrameHeaderRoom+welcomeEnvelope+len(data))
		frame := ws.PrepareTextAt(protocol.AppendEvent(b, protocol.EventWelcome, "", "", 0, data))
		// Register before the welcome goes out: a client holding its welcome
		// is findable by device (revocation, replacement, RPC). Nothing
		// sends to a connection between the two but a close.
		if h.reg.add(c) {
			c.setState(connRegistered)
			h.metrics.connections.Inc()
			h.kinds.add(c)
			h.expiry.add(c)
			h.rpc.connected(c)
		}
		c.sendFrame(frame)
		// OnClose may have run before the connection was registered (a
		// client that hung up right after its handshake): undo it then.
		if c.Closed() {
			c.unregister()
		}
	})
}

// Done returns a channel closed when the connection closes.
func (c *Conn) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := c.extraLocked()
	if x.done == nil {
		x.done = make(chan struct{})
		if c.closed {
			close(x.done)
		}
	}
	return x.done
}

// Closed reports whether the connection has closed.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close closes the connection with a close code; OnClose cleanup follows.
func (c *Conn) Close(code int, reason string) {
	if w := c.ws.Load(); w != nil {
		w.Close(code, reason)
	}
}

// Disconnect closes the connection with d's code and reason.
func (c *Conn) Disconnect(d protocol.Disconnect) { c.Close(d.Code, d.Reason) }

// AfterClose registers fn to run once after the connection closed (other parts
// of the hub use it to drop subscriptions and registrations). If the
// connection is already closed fn runs at once.
func (c *Conn) AfterClose(fn func(*Conn)) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		fn(c)
		return
	}
	x := c.extraLocked()
	x.onClose = append(x.onClose, fn)
	c.mu.Unlock()
}

// Value returns per-connection state stored under key by another part of
// the hub; Store sets it. Keys should be unexported types of their owner.
func (c *Conn) Value(key any) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.extra == nil {
		return nil
	}
	for _, kv := range c.extra.values {
		if kv.key == key {
			return kv.v
		}
	}
	return nil
}

// SetValue stores per-connection state under key; see Value.
func (c *Conn) SetValue(key, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := c.extraLocked()
	for i := range x.values {
		if x.values[i].key == key {
			x.values[i].v = v
			return
		}
	}
	x.values = append(x.values, connValue{key, v})
}

// connValue is one entry of connExtra.values. A connection holds a handful (one
// per part of the hub that keeps state on it): a slice costs a fraction of
// the smallest map.
type connValue struct{ key, v any }

// sendFrame queues a prepared frame. A full queue closes the connection with
// 4108 inside the transport; that is counted by OnClose.
func (c *Conn) sendFrame(frame []byte) bool {
	if c.compact != nil {
		return c.sendCompactFrame(frame)
	}
	return c.sendWire(frame)
}

// sendWire queues a prepared frame as it is, whatever the codec.
func (c *Conn) sendWire(frame []byte) bool {
	w := c.ws.Load()
	if w == nil {
		return false
	}
	if err := w.Send(frame); err != nil {
		return false
	}
	c.hub.metrics.framesOut.Inc()
	return true
}

// SendPrepared queues a frame prepared with ws.PrepareText (shared by many
// connections). It never blocks; it reports whether the frame was queued.
func (c *Conn) SendPrepared(frame []byte) bool { return c.sendFrame(frame) }

// SendEvent encodes and queues an event.
func (c *Conn) SendEvent(event, topic, epoch string, offset uint64, data json.RawMessage) bool {
	return c.sendFrame(ws.PrepareText(protocol.AppendEvent(nil, event, topic, epoch, offset, data)))
}

func (c *Conn) sendResult(id string, result any) {
	var raw json.RawMessage
	switch r := result.(type) {
	case nil:
	case json.RawMessage:
		raw = r
	default:
		b, err := jsonMarshal(result)
		if err != nil {
			c.hub.log.Error("encode result", "conn", c.ID(), "err", err)
			c.sendError(id, protocol.AsError(err))
			return
		}
		raw = b
	}
	c.sendRawResult(id, raw)
}

// sendRawResult answers request id with a result that is JSON already,
// built in place in a buffer of its size: one allocation, no copy.
func (c *Conn) sendRawResult(id string, result json.RawMessage) {
	// What the frame holds besides id and result (more when id needs
	// escaping: append grows the buffer then).
	const frameRest = len(`{"type":"res","id":"","ok":true,"result":null}`)
	b := make([]byte, ws.FrameHeaderRoom, ws.FrameHeaderRoom+frameRest+len(id)+len(result))
	c.sendFrame(ws.PrepareTextAt(protocol.AppendResult(b, id, result)))
}

func (c *Conn) sendError(id string, e *protocol.Error) {
	b, err := protocol.AppendError(nil, id, e)
	if err != nil {
		b, _ = protocol.AppendError(nil, id, protocol.AsError(nil))
	}
	c.sendFrame(ws.PrepareText(b))
}

// sendFrameError answers a frame that could not be decoded: a response when
// the request's id can be recovered, an "error" event otherwise.
func (c *Conn) sendFrameError(raw []byte, e *protocol.Error) {
	if id := protocol.ProbeID(raw); id != "" {
		c.sendError(id, e)
		return
	}
	data, _ := jsonMarshal(e)
	c.SendEvent(protocol.EventError, "", "", 0, data)
}

// OnMessage implements ws.Handler. It runs on the read loop: it decodes the
// frames, answers what can be answered from memory and queues the rest.
func (c *Conn) OnMessage(w *ws.Conn, payload []byte) {
	c.ws.CompareAndSwap(nil, w)
	c.welcome()
	if c.compact != nil {
		c.compactMessage(payload) // one array per message, never split
		return
	}
	protocol.Split(payload, func(raw []byte) {
		c.hub.metrics.framesIn.Inc()
		// A request for a method that starts on the read loop (rpc.call)
		// and a machine's answer to a relayed call are read in place:
		// their params and result are copied once, into the frame that
		// relays them. Other frames are decoded.
		var m *Method
		startable := func(method []byte) bool {
			m = c.hub.methods[string(method)]
			return m != nil && m.Mode == Async && m.Start != nil
		}
		if id, _, params, ok := protocol.ScanRequest(raw, startable); ok {
			c.requestInPlace(m, raw, string(id), params)
			return
		}
		if id, res, ok := protocol.ScanResult(raw); ok && c.hub.rpc.relayResult(c, id, res) {
			return
		}
		f, err := protocol.Decode(raw)
		if err != nil {
			c.hub.metrics.invalidFrames.Inc()
			if c.failPendingResponse(raw, err) {
				return // a malformed answer to a server request (see rpc_conn.go)
			}
			c.sendFrameError(raw, protocol.AsError(err))
			return
		}
		switch f.Type {
		case protocol.TypeRequest:
			c.request(f)
		case protocol.TypeResponse:
			c.response(f)
		case protocol.TypeEvent:
			c.hub.clientEvent(c, f)
		}
	})
}

// OnClose implements ws.Handler.
func (c *Conn) OnClose(_ *ws.Conn, code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	var pending map[string]chan *protocol.Frame
	var hooks []func(*Conn)
	if c.extra != nil {
		if c.extra.done != nil {
			close(c.extra.done)
		}
		pending = c.extra.pending
		c.extra.pending = nil
		hooks = c.extra.onClose
		c.extra.onClose = nil
	}
	subs := c.subs
	claim := c.claim
	c.mu.Unlock()

	for _, ch := range pending {
		close(ch) // a nil frame tells the waiter the connection is gone
	}
	h := c.hub
	h.metrics.disconnected(code)
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		var user, device string
		if p := c.principal.Load(); p != nil {
			user, device = p.UserID, p.DeviceID
		}
		h.log.Debug("disconnected", "conn", c.ID(), "user", user, "device", device, "code", code, "reason", reason)
	}
	c.unregister()
	c.releaseSlot()
	if subs != nil {
		h.connClosed(subs)
	}
	if claim != nil {
		h.rpc.claimClosed(c, claim)
	}
	for _, fn := range hooks {
		fn(c)
	}
}

// unregister removes a closed connection from the registry, exactly once
// whichever of welcome and OnClose gets there last.
func (c *Conn) unregister() {
	if !c.unmarkState(connRegistered) {
		return
	}
	h := c.hub
	h.metrics.connections.Dec()
	h.kinds.remove(c)
	h.expiry.remove(c)
	if last := h.reg.remove(c); last {
		h.deviceGone(c)
	}
}

// request routes one decoded request.
func (c *Conn) request(f *protocol.Frame) {
	h := c.hub
	m := h.methods[f.Method]
	if m == nil {
		m = h.interceptMethod(f.Method)
	}
	if m == nil {
		c.sendError(f.ID, protocol.Errorf(protocol.CodeUnknownMethod, "unknown method %q", f.Method))
		h.metrics.unknownMethods.Inc()
		return
	}
	if !c.admit(m, f.ID) {
		return
	}
	switch m.Mode {
	case Inline:
		c.mu.Lock()
		if !c.running && len(c.inbox) == 0 {
			c.mu.Unlock()
			c.handle(m, f)
			return
		}
		c.inbox = append(c.inbox, f)
		c.mu.Unlock()
	case Async:
		if !c.takeAsync(f.ID) {
			return
		}
		if m.Start != nil && m.Start(c, f.ID, f.Params, f.Idem) {
			return // the method answers and releases the request itself
		}
		c.spawnAsync(m, f)
		return
	default:
		c.mu.Lock()
		c.inbox = append(c.inbox, f)
		if c.running {
			c.mu.Unlock()
			return
		}
		c.running = true
		c.mu.Unlock()
		h.wg.Add(1)
		go c.drainInbox()
		return
	}
	// An Inline request queued behind Serial ones: make sure a drainer runs.
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return
	}
	c.running = true
	c.mu.Unlock()
	h.wg.Add(1)
	go c.drainInbox()
}

// requestInPlace routes a request that protocol.ScanRequest read from raw
// on the read loop (no "idem"; id and params alias raw) to m, an Async
// method with Start: Start reads it there, and only a request Start
// declines is decoded, for its goroutine.
func (c *Conn) requestInPlace(m *Method, raw []byte, id string, params json.RawMessage) {
	if !c.admit(m, id) || !c.takeAsync(id) {
		return
	}
	if m.Start(c, id, params, "") {
		return // the method answers and releases the request itself
	}
	f, err := protocol.Decode(raw)
	if err != nil { // ScanRequest reads only what Decode reads (FuzzScanRequest)
		c.hub.log.Error("decode a request read in place", "conn", c.ID(), "method", m.Name, "err", err)
		c.sendError(id, protocol.AsError(nil))
		c.releaseAsync()
		c.hub.inflight.Done()
		return
	}
	c.spawnAsync(m, f)
}

// admit checks that the connection may call m now (its scopes, its rate
// limit) and counts the request in flight; otherwise it answers request id
// with the refusal.
func (c *Conn) admit(m *Method, id string) bool {
	p := c.Principal()
	if m.Scope != ScopeAuthenticated && !p.HasScope(m.Scope) {
		c.sendError(id, protocol.Errorf(protocol.CodeForbidden, "method %s needs scope %q", m.Name, m.Scope))
		return false
	}
	if m.AppScope != "" && p.AppID != "" && !p.HasScope(m.AppScope) {
		c.sendError(id, protocol.Errorf(protocol.CodeForbidden, "method %s needs scope %q for an app", m.Name, m.AppScope))
		return false
	}
	if wait, ok := c.allow(); !ok {
		e := protocol.Errorf(protocol.CodeRateLimited, "too many requests")
		e.RetryAfterMs = wait.Milliseconds() + 1
		c.sendError(id, e)
		return false
	}
	c.hub.inflight.Add()
	return true
}

// takeAsync takes one of the connection's Async slots for request id;
// when none is free it answers the request and releases its inflight
// count.
func (c *Conn) takeAsync(id string) bool {
	h := c.hub
	c.mu.Lock()
	if int(c.async) >= h.cfg.MaxAsyncPerConn {
		c.mu.Unlock()
		h.inflight.Done()
		c.sendError(id, protocol.Errorf(protocol.CodeRateLimited, "too many concurrent calls on this connection (max %d)", h.cfg.MaxAsyncPerConn))
		return false
	}
	c.async++
	c.mu.Unlock()
	return true
}

// releaseAsync gives back an Async slot.
func (c *Conn) releaseAsync() {
	c.mu.Lock()
	c.async--
	c.mu.Unlock()
}

// spawnAsync runs an Async request on a goroutine of its own.
func (c *Conn) spawnAsync(m *Method, f *protocol.Frame) {
	c.hub.spawn(func() {
		c.handle(m, f)
		c.releaseAsync()
	})
}

// drainInbox handles queued requests in order and exits when the inbox is
// empty, so an idle connection has no goroutine.
func (c *Conn) drainInbox() {
	defer c.hub.wg.Done()
	for {
		c.mu.Lock()
		if len(c.inbox) == 0 {
			c.running = false
			c.inbox = nil
			c.mu.Unlock()
			return
		}
		f := c.inbox[0]
		c.inbox[0] = nil
		c.inbox = c.inbox[1:]
		c.mu.Unlock()
		if fs := c.takePublishBatch(f); fs != nil {
			c.handlePublishBatch(fs)
			continue
		}
		c.handle(c.hub.methods[f.Method], f)
	}
}

// handle runs a method's handler and answers; it releases one inflight count.
func (c *Conn) handle(m *Method, f *protocol.Frame) {
	h := c.hub
	defer h.inflight.Done()
	start := time.Now()
	call := &Call{Conn: c, Principal: c.Principal(), ID: f.ID, Method: f.Method, Params: f.Params, Idem: f.Idem}
	var (
		result any
		err    error
	)
	if f.Idem != "" && m.Idempotent {
		result, err = h.invokeIdempotent(m, call)
	} else {
		result, err = h.invoke(m, call)
	}
	if err != nil {
		pe := protocol.AsError(err)
		if pe.Code == protocol.CodeInternal {
			h.log.Error("method failed", "method", m.Name, "conn", c.ID(), "user", call.Principal.UserID, "device", call.Principal.DeviceID, "err", err)
		}
		c.sendError(f.ID, pe)
	} else {
		c.sendResult(f.ID, result)
	}
	for _, fn := range call.afterReply {
		fn()
	}
	h.metrics.methodSeconds.WithLabelValues(m.Name, outcome(err)).Observe(time.Since(start).Seconds())
}

// invoke runs the handler, turning a panic into an internal error so that one
// bad request never takes the server down (logged at most once per
// panicLogEvery).
func (h *Hub) invoke(m *Method, call *Call) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			h.logPanic(m.Name, call.Conn.ID(), r)
			err = protocol.AsError(nil)
		}
	}()
	return m.Handler(h.ctx, call)
}

// invokeIdempotent runs an Idempotent method's handler through the
// idempotency records, its raw params (compacted) as the fingerprint.
func (h *Hub) invokeIdempotent(m *Method, call *Call) (any, error) {
	params := call.Params
	if len(params) > 0 {
		var err error
		if params, err = protocol.Compact(params); err != nil {
			return nil, protocol.Errorf(protocol.CodeBadRequest, "params: invalid JSON")
		}
	}
	return h.idem.do(h.ctx, call.Principal.Key(), call.Idem, Fingerprint(m.Name, params), false, func() (json.RawMessage, error) {
		res, err := h.invoke(m, call)
		if err != nil {
			return nil, err
		}
		return jsonMarshal(res)
	})
}

// allow applies the connection's token-bucket rate limit.
func (c *Conn) allow() (time.Duration, bool) {
	l := c.hub.limitsOf(c.hub.lim.Load())
	if l.RequestsPerSecond < 0 {
		return 0, true
	}
	now := c.hub.deps.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rate.Take(now, float64(l.RequestsPerSecond), l.RequestBurst)
}

// Request sends a request to the client and waits for its response (the
// server calling a method on a machine). It returns the response frame, or
// an error when ctx ends or the connection closes first. onEvent, when
// non-nil, is not used here; events from the client are routed by the hub.
func (c *Conn) Request(ctx context.Context, method string, params json.RawMessage, meta *protocol.Meta) (*protocol.Frame, string, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, "", protocol.Errorf(protocol.CodeUnavailable, "target disconnected")
	}
	id := c.nextRequestIDLocked()
	ch := make(chan *protocol.Frame, 1)
	c.addPendingLocked(id, ch)
	c.mu.Unlock()

	b, err := protocol.AppendRequest(nil, id, method, params, "", meta)
	if err != nil {
		c.forget(id)
		return nil, id, err
	}
	if !c.sendFrame(ws.PrepareText(b)) {
		c.forget(id)
		return nil, id, protocol.Errorf(protocol.CodeUnavailable, "target disconnected")
	}
	select {
	case f, ok := <-ch:
		if !ok || f == nil {
			return nil, id, protocol.Errorf(protocol.CodeUnavailable, "target disconnected during the call")
		}
		return f, id, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, id, ctx.Err()
	}
}

func (c *Conn) forget(id string) {
	c.mu.Lock()
	c.takePendingLocked(id)
	c.mu.Unlock()
}

// response delivers a client's response to the server request waiting for it.
func (c *Conn) response(f *protocol.Frame) {
	c.mu.Lock()
	ch := c.takePendingLocked(f.ID)
	c.mu.Unlock()
	if ch == nil {
		if !c.hub.rpc.relayResponse(c, f) {
			c.hub.metrics.strayResponses.Inc()
		}
		return
	}
	ch <- f
}

// closeLabel is the disconnects metric's code label: the codes of the
// protocol's table and 1006 (no close frame); "other" for the rest, so a
// peer cannot grow the label set.
func closeLabel(code int) string {
	if _, ok := protocol.DisconnectFor(code); ok || code == protocol.CloseAbnormal {
		return strconv.Itoa(code)
	}
	return "other"
}

func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	return string(protocol.AsError(err).Code)
}
