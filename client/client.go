package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
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
	events chan *protocol.Frame
	wg     sync.WaitGroup // every goroutine but the supervisor

	state      atomic.Int32
	closeCode  atomic.Int32
	refreshing atomic.Bool // a token refresh is in flight

	mu        sync.Mutex
	started   bool                                                     // guarded by mu: Connect was called
	closing   bool                                                     // guarded by mu: Close was called
	finished  bool                                                     // guarded by mu: finish ran
	cur       *conn                                                    // guarded by mu: the live connection, nil while disconnected
	welcome   protocol.Welcome                                         // guarded by mu: of the latest connection
	onEvent   map[string][]func(*protocol.Frame)                       // guarded by mu
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
		events:  make(chan *protocol.Frame, 256),
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
// connection is delivered too.
func (c *Client) OnEvent(event string, fn func(*protocol.Frame)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onEvent[event] = append(c.onEvent[event], fn)
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
// calls them, so they see events in arrival order.
func (c *Client) dispatchLoop() {
	for {
		select {
		case f := <-c.events:
			c.dispatch(f)
		case <-c.ctx.Done():
			// The events received before the end still reach their
			// handlers: a server that sends an event and then closes
			// (app.stopped, then 1000) must not have it dropped.
			for {
				select {
				case f := <-c.events:
					c.dispatch(f)
				default:
					return
				}
			}
		}
	}
}

// dispatch runs the handlers of one event.
func (c *Client) dispatch(f *protocol.Frame) {
	c.mu.Lock()
	fns := append(append([]func(*protocol.Frame){}, c.onEvent[f.Event]...), c.onEvent["*"]...)
	c.mu.Unlock()
	for _, fn := range fns {
		fn(f)
	}
}
