// Package hub is Junction's real-time core: the connection lifecycle on top
// of the WebSocket transport, the registry of connections by id, device and
// user, method dispatch with scopes and idempotency, token expiry, and
// graceful shutdown. Channels, presence, history and the RPC relay build on
// it.
//
// Lock order: see docs/LOCKORDER.md (every lock of the server, in one file).
package hub

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// Config configures the hub. The zero value of every field selects its
// documented default.
type Config struct {
	// NodeID names this node in welcome events and in the cluster; default: random.
	NodeID string `yaml:"node_id" doc:"name of this node (default: random)"`
	// MaxFrameBytes limits one inbound WebSocket message; default 64 KiB.
	MaxFrameBytes int `yaml:"max_frame_bytes" doc:"largest inbound WebSocket message in bytes (default 65536)"`
	// MaxBinaryBytes limits one inbound binary message (a device stream
	// frame, binary.go); bigger closes with 1009. Default 32 KiB.
	MaxBinaryBytes int `yaml:"max_binary_bytes" doc:"largest inbound binary WebSocket message (a device stream frame) in bytes; bigger closes with 1009 (default 32768)"`
	// MaxQueueBytes and MaxQueueFrames bound each connection's outbound queue;
	// a connection that overflows it is closed with 4108. Defaults 1 MiB, 4096.
	MaxQueueBytes  int `yaml:"max_queue_bytes" doc:"outbound queue bound per connection in bytes (default 1048576)"`
	MaxQueueFrames int `yaml:"max_queue_frames" doc:"outbound queue bound per connection in frames (default 4096)"`
	// HeartbeatInterval is how often the server pings; HeartbeatTimeout how
	// long it waits for an answer. Defaults 30 s and 10 s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" doc:"WebSocket ping interval (default 30s)"`
	HeartbeatTimeout  time.Duration `yaml:"heartbeat_timeout" doc:"close a connection that does not answer a ping within this (default 10s)"`
	// WriteTimeout closes a connection whose socket stays unwritable this long; default 10 s.
	WriteTimeout time.Duration `yaml:"write_timeout" doc:"close a connection whose socket stays unwritable this long (default 10s)"`
	// Transport selects the WebSocket transport (ws.Kind): "epoll", the
	// default on Linux, or "portable" (a goroutine pair per connection),
	// the only one elsewhere.
	Transport string `yaml:"transport" doc:"WebSocket transport: epoll (Linux only, the default there) or portable (a reader and a writer goroutine per connection; the default elsewhere)"`
	// MaxSubscriptions limits the channels one connection may join; default 1024.
	MaxSubscriptions int `yaml:"max_subscriptions" doc:"channel subscriptions per connection (default 1024)"`
	// MaxAsyncPerConn limits concurrent Async requests per connection; default 64.
	MaxAsyncPerConn int `yaml:"max_async_per_conn" doc:"concurrent long-running requests per connection (default 64)"`
	// MaxConnections bounds the open WebSocket connections of this node;
	// one more handshake is refused with 503 and Retry-After before the
	// upgrade. Default DefaultMaxConnections; negative disables.
	MaxConnections int `yaml:"max_connections" doc:"open WebSocket connections on this node; one more handshake answers 503 with Retry-After (default 1000000, negative disables)"`
	// MaxConnectionsPerUser bounds the open connections of one user (or of
	// an app key bound to no user); one more is refused with 429 and
	// Retry-After. Default DefaultMaxConnectionsPerUser; negative disables.
	MaxConnectionsPerUser int `yaml:"max_connections_per_user" doc:"open WebSocket connections of one user; one more handshake answers 429 with Retry-After (default 1000, negative disables)"`
	// RequestsPerSecond and RequestBurst rate-limit requests per connection
	// (token bucket); defaults 1000 and 2000. A negative rate disables the limit.
	RequestsPerSecond int `yaml:"requests_per_second" doc:"sustained request rate per connection, negative disables (default 1000)"`
	RequestBurst      int `yaml:"request_burst" doc:"request burst per connection (default 2000)"`
	// IdemTTL is how long an idempotency record is kept (WebSocket and
	// REST alike); IdemMaxEntries bounds the in-memory records. Defaults
	// 24 h and 100,000.
	IdemTTL        time.Duration `yaml:"idem_ttl" doc:"how long a request's idempotency record is kept (default 24h)"`
	IdemMaxEntries int           `yaml:"idem_max_entries" doc:"in-memory idempotency records kept at most (default 100000)"`
	// TokenExpiryWarning is how long before a connection's credential expires
	// it receives token.expiring; default 60 s.
	TokenExpiryWarning time.Duration `yaml:"token_expiry_warning" doc:"send token.expiring this long before the credential expires (default 60s)"`
	// ShutdownDrain bounds how long a graceful shutdown waits for in-flight
	// requests; ReconnectAfter is the hint sent in server.shutdown. Defaults 10 s and 1 s.
	ShutdownDrain  time.Duration `yaml:"shutdown_drain" doc:"how long shutdown waits for in-flight requests (default 10s)"`
	ReconnectAfter time.Duration `yaml:"reconnect_after" doc:"reconnect hint sent to clients on shutdown (default 1s)"`
	// PresenceTTL is how long a presence entry lives in the broker without
	// a refresh; one hub loop refreshes this node's entries every third of
	// it, so the clients of a node that stopped without leaving drop out of
	// the presence sets within PresenceTTL. Default 60 s; at least 3 ms.
	PresenceTTL time.Duration `yaml:"presence_ttl" doc:"lifetime of a presence entry without refresh; this node refreshes its entries every third of it (default 60s)"`
	// RPC configures the relay of calls between devices (see rpc.go).
	RPC RPCConfig `yaml:"rpc"`
	// IoT configures /ws/iot (iot.go). The binary reads it from the
	// configuration's top-level iot section.
	IoT IoTConfig `yaml:"-"`
	// Namespaces declares channel namespaces (see NamespaceConfig); the
	// built-in user, device and public namespaces are always present.
	Namespaces []NamespaceConfig `yaml:"namespaces" doc:"channel namespaces (file only)"`
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = NewNodeID()
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.MaxFrameBytes, protocol.DefaultMaxFrameBytes)
	def(&c.MaxBinaryBytes, DefaultMaxBinaryBytes)
	def(&c.MaxQueueBytes, 1<<20)
	def(&c.MaxQueueFrames, 4096)
	def(&c.MaxSubscriptions, 1024)
	def(&c.MaxAsyncPerConn, 64)
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxConnectionsPerUser, DefaultMaxConnectionsPerUser)
	def(&c.RequestsPerSecond, 1000)
	def(&c.RequestBurst, 2000)
	def(&c.IdemMaxEntries, 100_000)
	defd(&c.HeartbeatInterval, 30*time.Second)
	defd(&c.HeartbeatTimeout, 10*time.Second)
	defd(&c.WriteTimeout, 10*time.Second)
	if c.Transport == "" {
		c.Transport = string(ws.DefaultKind)
	}
	defd(&c.IdemTTL, 24*time.Hour)
	defd(&c.TokenExpiryWarning, time.Minute)
	defd(&c.ShutdownDrain, 10*time.Second)
	defd(&c.ReconnectAfter, time.Second)
	defd(&c.PresenceTTL, time.Minute)
	c.RPC.setDefaults()
	c.IoT.setDefaults()
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.MaxFrameBytes < 0 || c.MaxFrameBytes > 16<<20:
		return errors.New("max_frame_bytes must be between 1 and 16 MiB")
	case c.MaxBinaryBytes < 0 || c.MaxBinaryBytes > 16<<20:
		return errors.New("max_binary_bytes must be between 1 and 16 MiB")
	case c.MaxQueueBytes < 0 || c.MaxQueueFrames < 0:
		return errors.New("max_queue_bytes and max_queue_frames must not be negative")
	case c.MaxQueueBytes > 1<<30:
		return errors.New("max_queue_bytes must be at most 1 GiB")
	case c.HeartbeatInterval < 0 || c.HeartbeatTimeout < 0:
		return errors.New("heartbeat_interval and heartbeat_timeout must not be negative")
	case c.MaxSubscriptions < 0 || c.MaxAsyncPerConn < 0:
		return errors.New("max_subscriptions and max_async_per_conn must not be negative")
	case c.PresenceTTL < 0 || (c.PresenceTTL > 0 && c.PresenceTTL < 3*time.Millisecond):
		return errors.New("presence_ttl must be at least 3ms")
	}
	if _, err := ws.ParseKind(c.Transport); err != nil {
		return err
	}
	if err := c.RPC.validate(); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	if err := c.IoT.Validate(); err != nil {
		return fmt.Errorf("iot: %w", err)
	}
	return nil
}

// Deps are the hub's collaborators.
type Deps struct {
	Logger *slog.Logger
	// Registerer receives the hub's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Authenticator verifies credentials presented in-band (auth.refresh).
	Authenticator *auth.Authenticator
	// DeviceSeen, when set, records the last-seen times of devices whose
	// connections closed (the store implements it), in batches: the times
	// gathered for up to 250 ms, at most one per device, in one call; the
	// rest when the hub closes. One call at a time, on a hub worker.
	DeviceSeen func(ctx context.Context, seen []SeenDevice) error
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Broker carries what must be cluster-wide (streams, presence, the node
	// directory, idempotency records). Nil parts default to one
	// NewMemoryBroker(NodeID) and NewMemoryRecords(IdemMaxEntries). The hub
	// runs and closes its Streams, Presence and Directory (Start, Close).
	Broker Broker
	// UserConns, when set, counts each user's connections across nodes
	// (a cluster) for MaxConnectionsPerUser; nil: this node counts alone.
	UserConns UserConns
}

// Hub is the real-time core. Create it with New, register methods, then Start.
type Hub struct {
	cfg       Config        // set once in New
	deps      Deps          // set once in New
	log       *slog.Logger  // set once in New
	transport *ws.Transport // set once in New
	iot       *ws.Transport // set once in New: /ws/iot connections (iot.go)
	metrics   *metrics      // set once in New
	// methods is filled by Register before Start and read-only afterwards.
	methods map[string]*Method
	events  map[string]ClientEventFunc
	binary  BinaryHandler // set before Start by SetBinaryHandler (binary.go); nil refuses binary messages
	// clusterEvents is filled by OnClusterEvent before Start and read-only
	// afterwards (events.go).
	clusterEvents map[string]func(json.RawMessage)
	featureList   []string
	reg           registry
	slots         connSlots   // admitted connections, for MaxConnections and MaxConnectionsPerUser
	kinds         kindCounts  // registered connections by kind, for the admin statistics (admin.go)
	idem          idempotency // set once in New
	panics        panicLog
	lastSeen      lastSeen
	welcome       welcomeTemplate // the welcome event's constant JSON
	expiry        expiryIndex
	rpc           *rpcRelay // set once in New
	ch            channels  // set up in New (channel.go)
	// deliverHook, when set, runs first in every HandlePublication (tests
	// hold a fan-out in progress with it; export_test.go). Set once before
	// Start.
	deliverHook func(topic string, pub Publication)
	// intercept is the backend proxy's hooks (intercept.go); nil: none.
	intercept atomic.Pointer[interceptorBox]
	// lim replaces Config's limits once SetLimits ran (reload.go).
	lim atomic.Pointer[Limits]
	// uconns shares the per-user connection counts of a cluster (userconns.go).
	uconns userConnShare

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background loops and handler goroutines (workers)
	pool   workerPool     // idle workers of spawn and Go (workers.go)
	// goMu orders Go's wg.Add before Close's wg.Wait: once Close set
	// waiting (under goMu), Go no longer adds to wg (a request handler may
	// call Go while Close waits, with the count at zero).
	goMu     sync.RWMutex
	waiting  bool // guarded by goMu
	started  atomic.Bool
	draining atomic.Bool
	closed   atomic.Bool
	inflight inflight // requests being handled, for the shutdown drain
}

// inflight counts the requests being handled. Unlike a sync.WaitGroup, whose
// Add from zero must happen before Wait, it may gain requests while Shutdown
// waits for it to empty: open connections keep sending during the drain.
type inflight struct {
	mu   sync.Mutex
	n    int           // guarded by mu
	idle chan struct{} // guarded by mu: closed, and reset to nil, when n drops to 0
}

// Add counts one more request.
func (f *inflight) Add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

// Done releases one request.
func (f *inflight) Done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n < 0 {
		panic("hub: inflight count below zero")
	}
	if f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// Idle returns a channel closed once no request is in flight.
func (f *inflight) Idle() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	return f.idle
}

// New returns a hub. It has no side effects: nothing runs until Start.
func New(cfg Config, deps Deps) (*Hub, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hub config: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if b := &deps.Broker; b.Streams == nil || b.Presence == nil || b.Directory == nil {
		mb := NewMemoryBroker(cfg.NodeID)
		if b.Streams == nil {
			b.Streams = mb
		}
		if b.Presence == nil {
			b.Presence = mb
		}
		if b.Directory == nil {
			b.Directory = mb
		}
	}
	if deps.Broker.Records == nil {
		deps.Broker.Records = NewMemoryRecords(cfg.IdemMaxEntries, deps.Now)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Logger,
		methods: make(map[string]*Method),
		ctx:     ctx,
		cancel:  cancel,
		pool:    workerPool{work: make(chan func())},
	}
	ping := cfg.HeartbeatInterval
	h.transport = ws.New(ws.Config{
		Kind:            ws.Kind(cfg.Transport),
		MaxMessageBytes: cfg.MaxFrameBytes,
		MaxBinaryBytes:  cfg.MaxBinaryBytes,
		MaxQueueBytes:   cfg.MaxQueueBytes,
		MaxQueueFrames:  cfg.MaxQueueFrames,
		WriteTimeout:    cfg.WriteTimeout,
		PingInterval:    ping,
		PongTimeout:     cfg.HeartbeatTimeout,
	})
	h.iot = newIoTTransport(cfg)
	h.metrics = newMetrics(deps.Registerer, h)
	h.reg.init()
	h.uconns.init(h)
	h.idem = idempotency{records: deps.Broker.Records, ttl: cfg.IdemTTL, now: deps.Now, log: deps.Logger, metrics: h.metrics.idem}
	h.lastSeen.init(100_000)
	h.expiry.init()
	h.registerBuiltins()
	h.clusterEvents = map[string]func(json.RawMessage){}
	h.OnClusterEvent(eventDisconnect, h.handleDisconnectEvent)
	h.rpc = newRPCRelay(h)
	h.rpc.register()
	if err := h.initChannels(); err != nil {
		return nil, err
	}
	return h, nil
}

// Config returns the effective configuration, defaults applied.
func (h *Hub) Config() Config { return h.cfg }

// NodeID returns this node's id.
func (h *Hub) NodeID() string { return h.cfg.NodeID }

// Start launches the transport and the hub's background loops.
func (h *Hub) Start() error {
	if !h.started.CompareAndSwap(false, true) {
		return errors.New("hub: already started")
	}
	if err := h.deps.Broker.Run(h.ctx, brokerHandler{h}); err != nil {
		return fmt.Errorf("hub: run broker: %w", err)
	}
	if err := h.subscribeEvents(h.ctx); err != nil {
		return err
	}
	if err := h.transport.Start(); err != nil {
		return fmt.Errorf("hub: start transport: %w", err)
	}
	if err := h.iot.Start(); err != nil {
		return fmt.Errorf("hub: start iot transport: %w", err)
	}
	// One goroutine per periodic job for the whole hub, not a timer per
	// connection: device claims, credential expiry.
	h.Go(func(ctx context.Context) { every(ctx, h.rpc.cfg.LeaseTTL/3, h.rpc.refreshClaims) })
	if err := h.startChannels(); err != nil {
		return err
	}
	h.Go(func(ctx context.Context) { every(ctx, time.Second, func(context.Context) { h.checkExpiry() }) })
	h.Go(h.runAdminStats)
	return nil
}

// every calls fn every d until ctx is done.
func every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// Draining reports whether a shutdown has begun; new connections are refused then.
func (h *Hub) Draining() bool { return h.draining.Load() }

// Shutdown drains the hub gracefully: it refuses new connections, tells every
// connection server.shutdown with a reconnect hint, waits up to
// Config.ShutdownDrain (or ctx) for in-flight requests to be answered, then
// closes every connection with 1012 and stops. Safe to call twice.
func (h *Hub) Shutdown(ctx context.Context) error {
	if !h.draining.CompareAndSwap(false, true) {
		return h.Close()
	}
	data, _ := jsonMarshal(protocol.Shutdown{ReconnectAfterMs: h.cfg.ReconnectAfter.Milliseconds(), Reason: "server shutting down"})
	frame := ws.PrepareText(protocol.AppendEvent(nil, protocol.EventShutdown, "", "", 0, data))
	h.eachConn(func(c *Conn) { c.sendFrame(frame) })

	ctx, cancel := context.WithTimeout(ctx, h.cfg.ShutdownDrain)
	defer cancel()
	var err error
	select {
	case <-h.inflight.Idle():
	case <-ctx.Done():
		err = fmt.Errorf("hub: shutdown drain: %w", ctx.Err())
	}
	h.eachConn(func(c *Conn) { c.Disconnect(protocol.DisconnectShutdown) })
	if cerr := h.Close(); cerr != nil && err == nil {
		err = cerr
	}
	<-h.inflight.Idle() // every request was answered or failed with its closed connection
	return err
}

// Close stops the hub at once: every connection is closed (1001) and every
// goroutine the hub owns has exited when it returns. Safe to call twice.
func (h *Hub) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return nil
	}
	h.draining.Store(true)
	h.cancel()
	var err error
	if h.started.Load() {
		err = h.transport.Close()
		if ierr := h.iot.Close(); ierr != nil && err == nil {
			err = ierr
		}
	}
	h.goMu.Lock()
	h.waiting = true
	h.goMu.Unlock()
	h.wg.Wait()
	if berr := h.deps.Broker.Close(); berr != nil && err == nil {
		err = fmt.Errorf("hub: close broker: %w", berr)
	}
	return err
}

// Broker returns the broker the hub runs on, defaults filled in.
func (h *Hub) Broker() Broker { return h.deps.Broker }

// brokerHandler routes what the broker delivers to the parts of the hub.
type brokerHandler struct{ h *Hub }

var _ PublicationBatchHandler = brokerHandler{}

// HandlePublication implements BrokerHandler. Channels deliver publications
// to local subscribers here.
func (b brokerHandler) HandlePublication(topic string, pub Publication) {
	b.h.HandlePublication(topic, pub)
}

// HandlePublications implements PublicationBatchHandler.
func (b brokerHandler) HandlePublications(topic string, pubs []Publication) {
	b.h.HandlePublications(topic, pubs)
}

// HandleNodeMessage implements BrokerHandler: node messages carry the RPC relay.
func (b brokerHandler) HandleNodeMessage(msg json.RawMessage) { b.h.rpc.handleNodeMessage(msg) }

// Len returns the number of open connections.
func (h *Hub) Len() int { return int(h.reg.count.Load()) }

// Upgrade completes the WebSocket handshake of a request whose principal was
// already authenticated, registers the connection and sends the welcome
// event. A newer connection of the same device replaces the older one (4009).
// Over Config.MaxConnections or Config.MaxConnectionsPerUser it upgrades
// nothing and returns a *ConnLimitError (503 or 429 with a retry hint); the
// connection's slot is given back when it closes.
func (h *Hub) Upgrade(w http.ResponseWriter, r *http.Request, p *auth.Principal, subprotocol string) (*Conn, error) {
	return h.upgrade(w, r, p, subprotocol, h.transport, nil)
}

// DisconnectWhere closes with d every registered connection for which match
// is true, and returns how many it closed. match runs on the caller's
// goroutine, once per connection, with no hub lock held. It walks every
// connection of the node: for rare, operator-driven sweeps (lockdown), not
// for the hot path.
func (h *Hub) DisconnectWhere(d protocol.Disconnect, match func(*Conn) bool) int {
	n := 0
	h.eachConn(func(c *Conn) {
		if match(c) {
			c.Disconnect(d)
			n++
		}
	})
	return n
}

// ConnsOfUser calls fn for every open connection of the user.
func (h *Hub) ConnsOfUser(userID string, fn func(*Conn)) { h.reg.eachOfUser(userID, fn) }

// ConnOfDevice returns the open connection of a device, or nil.
func (h *Hub) ConnOfDevice(deviceID string) *Conn { return h.reg.byDevice(deviceID) }

// CloseDevice closes the connection of a device (e.g. revoked: 4003).
func (h *Hub) CloseDevice(deviceID string, code int) bool {
	c := h.reg.byDevice(deviceID)
	if c == nil {
		return false
	}
	c.Close(code, protocol.CloseReason(code))
	return true
}

// LastSeen returns when a device's last connection closed on this node, as
// far as the hub remembers (the store is the durable record).
func (h *Hub) LastSeen(deviceID string) (time.Time, bool) { return h.lastSeen.get(deviceID) }

// Go runs fn on a goroutine owned by the hub: Close waits for it. fn should
// return when ctx is cancelled. Called once Close is waiting, fn still runs,
// with ctx cancelled, and Close does not wait for it.
// It runs on a pooled worker (workers.go).
func (h *Hub) Go(fn func(ctx context.Context)) {
	h.spawn(func() { fn(h.ctx) })
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewNodeID returns a random node id, the default of Config.NodeID.
func NewNodeID() string { return "n-" + randomID(6) }

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return idEncoding.EncodeToString(b)
}
