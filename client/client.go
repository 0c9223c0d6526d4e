package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Defaults of Options.
const (
	DefaultMinBackoff       = 250 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
	DefaultCallTimeout      = 30 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxHandlers      = 64
	DefaultMaxMessageBytes  = 16 << 20
	DefaultSendQueue        = 256
)

// Options configure a Client. The zero value of every field but URL is usable.
type Options struct {
	// URL is the WebSocket endpoint, ws://host:port/ws or wss://host/ws.
	URL string
	// Token is the credential sent as "Authorization: Bearer <token>".
	Token string
	// TokenFunc, when set, returns a fresh credential for each (re)connect
	// and for in-band refresh on token.expiring; it wins over Token.
	TokenFunc func(ctx context.Context) (string, error)
	// Header holds extra handshake headers.
	Header http.Header

	// Reconnect makes the client reconnect automatically when a connection
	// ends, unless its close code advises against it (see protocol.DisconnectFor).
	// When it is off, the first disconnect closes the client.
	Reconnect bool
	// MinBackoff and MaxBackoff bound the delay between reconnect attempts
	// (exponential backoff with jitter). Defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration

	// CallTimeout bounds a call whose context has no deadline. Default 30s.
	CallTimeout time.Duration
	// HandshakeTimeout bounds one connect: TCP, TLS, upgrade and the welcome
	// event. Default 10s.
	HandshakeTimeout time.Duration
	// MaxHandlers bounds the server requests served concurrently (see
	// Handle); a request beyond it is answered rate_limited. Default 64.
	MaxHandlers int
	// MaxMessageBytes bounds one inbound WebSocket message. Default 16 MiB.
	MaxMessageBytes int64
	// SendQueue is the capacity in frames of the outgoing queue of a
	// connection; senders wait (within their context) while it is full.
	// Default 256.
	SendQueue int

	// Logger receives the client's logs. By default they are discarded.
	Logger *slog.Logger
	// OnFrame, when set, sees every protocol frame the client sends (sent
	// true) or receives, as one JSON object, on the goroutine that writes
	// or reads it: for logging and for contract tests. It must not block
	// or keep frame.
	OnFrame func(sent bool, frame []byte)
	// OnState is called on every state change, from the goroutine that
	// drives the connection: keep it short and do not call Close from it.
	OnState func(State, error)

	// netDial, when set (by tests only), opens the TCP connection of each
	// connect in place of the default dialer: tests wrap the connection to
	// move its watchdog deadline.
	netDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o Options) withDefaults() Options {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxHandlers <= 0 {
		o.MaxHandlers = DefaultMaxHandlers
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.SendQueue <= 0 {
		o.SendQueue = DefaultSendQueue
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// State is the connection state of a Client.
type State int

// The states of a Client. A client goes Connecting → Connected →
// Disconnected, then either Connecting again (reconnect) or Closed.
const (
	StateConnecting State = iota + 1
	StateConnected
	StateDisconnected
	StateClosed
)

// String returns the state's lowercase name.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Client is a connection to a Junction server that survives reconnects. Its
// methods are safe for concurrent use.
//
// Goroutines: one supervisor (reconnects), one event dispatcher, per
// connection one reader and one writer, and up to Options.MaxHandlers
// goroutines serving server requests. All exit before Done is closed.
//
// Locks (their order: docs/LOCKORDER.md): no lock of the client is held
// while user code (handlers, hooks, OnState) runs, except a Subscription's
// own, which serialises its handler and callbacks.
type Client struct {
	opts   Options      // set once by New, with defaults
	log    *slog.Logger // set once by New
	ctx    context.Context
	cancel context.CancelFunc // cancels ctx: the client is closing
	done   chan struct{}      // closed by finish when every goroutine has exited
	nextID atomic.Uint64      // request ids, unique for the client's life
	sem    chan struct{}      // bounds the server requests served at once
	events chan inItem        // events and binary messages, in arrival order, for dispatchLoop
	wg     sync.WaitGroup     // every goroutine but the supervisor

	state      atomic.Int32
	closeCode  atomic.Int32
	refreshing atomic.Bool // a token refresh is in flight
	hasBinary  atomic.Bool // an OnBinary handler is registered: binary messages are read, not discarded

	mu        sync.Mutex
	started   bool                                                     // guarded by mu: Connect was called
	closing   bool                                                     // guarded by mu: Close was called
	finished  bool                                                     // guarded by mu: finish ran
	cur       *conn                                                    // guarded by mu: the live connection, nil while disconnected
	welcome   protocol.Welcome                                         // guarded by mu: of the latest connection
	onEvent   map[string][]func(*protocol.Frame)                       // guarded by mu
	onBinary  []func([]byte)                                           // guarded by mu
	methods   map[string]HandlerFunc                                   // guarded by mu
	onConnect []func(ctx context.Context, c *Client, reconnected bool) // guarded by mu
}

// HandlerFunc serves a request the server sends to this client (see Handle).
type HandlerFunc func(ctx context.Context, req *protocol.Frame) (any, error)

// New returns a client for opts without connecting: register event handlers,
// methods and OnConnect hooks, then call Connect. New has no side effects.
func New(opts Options) *Client {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		opts:    opts,
		log:     opts.Logger,
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		sem:     make(chan struct{}, opts.MaxHandlers),
		events:  make(chan inItem, 256),
		onEvent: map[string][]func(*protocol.Frame){},
		methods: map[string]HandlerFunc{},
	}
}

// Dial connects to the server and waits for its welcome event and for the
// OnConnect hooks; it is New followed by Connect. A refused upgrade returns a
// *HandshakeError. Dial never retries the first connection, even with
// Options.Reconnect; that option only governs later disconnects. On error
// the client is nil, and the methods of a nil *Client return ErrNilClient.
//
// Handlers registered on the returned client miss what arrived before Dial
// returned; use New, register, then Connect when that matters.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	c := New(opts)
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Connect makes the first connection: it dials, waits for the welcome event,
// runs the OnConnect hooks with reconnected=false and returns. On failure
// the client is closed (Done is closed) and cannot be reused. ctx bounds the
// first connection only.
func (c *Client) Connect(ctx context.Context) error {
	if c == nil {
		return ErrNilClient
	}
	c.mu.Lock()
	switch {
	case c.closing:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return errors.New("client: connect: already connected")
	}
	c.started = true
	c.mu.Unlock()

	c.wg.Go(c.dispatchLoop)
	c.setState(StateConnecting, nil)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	// Close during the first connect aborts it.
	unhook := context.AfterFunc(c.ctx, stop)
	defer unhook()
	cn, err := c.connect(cctx)
	if err != nil {
		if c.ctx.Err() != nil {
			err = ErrClosed
		}
		c.finish(err)
		return err
	}
	c.connected(cn, false)
	go c.supervise(cn) // owned by the client: it ends with finish, which Close waits for
	return nil
}

// connected makes cn the live connection and runs the OnConnect hooks.
func (c *Client) connected(cn *conn, reconnected bool) {
	c.mu.Lock()
	c.cur = cn
	c.welcome = cn.welcome
	hooks := append([]func(context.Context, *Client, bool){}, c.onConnect...)
	c.mu.Unlock()
	c.setState(StateConnected, nil)
	for _, fn := range hooks {
		fn(cn.ctx, c, reconnected)
	}
}

// current returns the live connection or the error a call gets without one.
func (c *Client) current() (*conn, error) {
	if c == nil {
		return nil, ErrNilClient
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.cur != nil:
		return c.cur, nil
	case c.closing || c.finished:
		return nil, ErrClosed
	case !c.started:
		return nil, errors.New("client: not connected: call Connect first")
	}
	return nil, errNotConnected()
}

// Close closes the connection with close code 1000, stops reconnecting and
// waits until every goroutine of the client has exited. Calls in flight fail
// with ErrClosed. Close is safe to call twice; it must not be called from an
// event handler, a method handler, an OnConnect hook or OnState (it waits for
// them): from there, start it in a new goroutine.
func (c *Client) Close() error {
	if c == nil {
		return ErrNilClient
	}
	c.mu.Lock()
	c.closing = true
	started := c.started
	c.mu.Unlock()
	c.cancel()
	if !started {
		c.finish(nil)
	}
	<-c.done
	return nil
}

// finish cancels everything, waits for the client's goroutines and closes
// Done. It runs once, on the supervisor's goroutine or, when there is none,
// on Connect's or Close's.
func (c *Client) finish(err error) {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.finished = true
	c.cur = nil
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.setState(StateClosed, err)
	close(c.done)
}

// Done returns a channel closed when the client is closed for good, by Close
// or because the connection ended with no reconnect to follow. Every
// goroutine of the client has exited by then.
func (c *Client) Done() <-chan struct{} { return c.done }

// State returns the current connection state (0 before Connect).
func (c *Client) State() State { return State(c.state.Load()) }

func (c *Client) setState(s State, err error) {
	c.state.Store(int32(s))
	if err != nil {
		c.log.Info("client state", "state", s.String(), "err", err)
	} else {
		c.log.Debug("client state", "state", s.String())
	}
	if fn := c.opts.OnState; fn != nil {
		fn(s, err)
	}
}

// CloseCode returns the close code of the most recent disconnect, 0 when it
// ended without a close frame from the server (or there was none yet).
func (c *Client) CloseCode() int { return int(c.closeCode.Load()) }

// Welcome returns the welcome of the current connection (of the latest one
// while disconnected; the zero value before the first).
func (c *Client) Welcome() protocol.Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// OnEvent registers fn for the events named event; "*" registers it for all
// events. Handlers run one at a time on one goroutine, in arrival order: for
// each event, its name's handlers then the "*" handlers, each in
// registration order. A slow handler delays the next events and, once the
// buffer of 256 events is full, reading from the server (responses
// included): a handler that makes calls while events arrive in bursts
// should make them on a goroutine of its own. The welcome event of each
// connection is delivered too, and so is every event read before a close
// that ends the client: they run before Done is closed.
func (c *Client) OnEvent(event string, fn func(*protocol.Frame)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onEvent[event] = append(c.onEvent[event], fn)
}

// OnBinary registers fn for the binary WebSocket messages the server sends
// (device stream media frames, PROTOCOL.md §11: decode them with
// protocol.ParseStreamFrame). Without a handler they are read and
// discarded. Binary handlers run on the goroutine of the event handlers, in
// arrival order with the events (a stream.gap event comes before the frame
// it announces), each in registration order; fn owns b. A binary message
// that arrives before the welcome is discarded.
func (c *Client) OnBinary(fn func(b []byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onBinary = append(c.onBinary, fn)
	c.hasBinary.Store(true)
}

// SendBinary queues b as one binary WebSocket message on the current
// connection (a device's media frame: protocol.AppendStreamFrame). b is
// copied; it returns once the message is queued, not written. A message
// over the welcome's limit on binary messages (limits.maxBinaryBytes, or
// the limit on any message when the welcome names none) fails with code
// too_large, rather than the server closing the connection with 1009.
func (c *Client) SendBinary(ctx context.Context, b []byte) error {
	if c == nil {
		return ErrNilClient
	}
	cn, err := c.current()
	if err != nil {
		return err
	}
	limit := cn.maxFrame.Load()
	if mb := cn.maxBinary.Load(); mb > 0 {
		limit = mb
	}
	if int64(len(b)) > limit {
		return protocol.Errorf(protocol.CodeTooLarge, "binary message of %d bytes is over the server's limit of %d", len(b), limit)
	}
	if err := cn.enqueueMsg(ctx, outMsg{b: slices.Clone(b), binary: true}); err != nil {
		return c.connErr(err)
	}
	return nil
}

// Handle registers fn to serve the requests for method that the server
// sends to this client (RPC: a machine serving methods). fn's result is
// encoded as JSON and sent back with the request's id; a *protocol.Error in
// fn's error chain is sent as is, any other error as code "internal" with a
// generic message (the error itself is logged). A panic in fn is recovered
// and answered as internal. Requests are served concurrently, up to
// Options.MaxHandlers at once; beyond that they are answered "rate_limited".
// Requests for methods without a handler are answered "unknown_method".
// ctx is canceled when the connection that carried the request ends.
func (c *Client) Handle(method string, fn func(ctx context.Context, req *protocol.Frame) (any, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.methods[method] = fn
}

// OnConnect registers fn to run after each welcome: with reconnected=false
// for the first connection (before Connect or Dial returns, when registered
// before Connect) and with reconnected=true after each reconnect. Hooks run
// in registration order on the goroutine that connected, before any later
// reconnect; ctx is canceled when that connection ends or the client
// closes. Errors inside a hook are the hook's business.
func (c *Client) OnConnect(fn func(ctx context.Context, c *Client, reconnected bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onConnect = append(c.onConnect, fn)
}

// dispatchLoop runs the event handlers. It is the single goroutine that
// calls them, so they see events in arrival order. When the client closes
// it still runs the events already buffered: a connection that ends for
// good (the last event before a close frame, such as app.stopped before
// 1000) has its readLoop return before finish cancels the client, so
// every event it read is dispatched before Done is closed.
func (c *Client) dispatchLoop() {
	for {
		select {
		case it := <-c.events:
			c.dispatch(it)
		case <-c.ctx.Done():
			for {
				select {
				case it := <-c.events:
					c.dispatch(it)
				default:
					return
				}
			}
		}
	}
}

// inItem is one entry of the dispatcher's queue: an event (f) or a binary
// message (bin).
type inItem struct {
	f   *protocol.Frame
	bin []byte
}

// dispatch runs the handlers of one event or binary message.
func (c *Client) dispatch(it inItem) {
	f := it.f
	if f == nil {
		c.mu.Lock()
		fns := slices.Clone(c.onBinary)
		c.mu.Unlock()
		for _, fn := range fns {
			fn(it.bin)
		}
		return
	}
	c.mu.Lock()
	fns := append(append([]func(*protocol.Frame){}, c.onEvent[f.Event]...), c.onEvent["*"]...)
	c.mu.Unlock()
	for _, fn := range fns {
		fn(f)
	}
}
