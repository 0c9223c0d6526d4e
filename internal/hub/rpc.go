package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/jsonscan"
	"github.com/junctionhq/junction/protocol"
)

// The RPC relay lets a device call methods that another device ("machine")
// registered, through the gateway: rpc.register / rpc.unregister on the
// serving side, rpc.call / rpc.cancel / rpc.list on the calling side, the
// rpc.progress event in both directions and the rpc.cancel event towards
// the target. docs/rpc.md is the reference.
//
// Locks (their order: docs/LOCKORDER.md):
//   - rpcRelay.leases[i] serialises the claims of the devices hashed to
//     stripe i (claim, refresh, clear, register; claims.go), so that they
//     never reorder for one device.
//   - rpcRelay.mu guards servers, waiters, remote and served.
//   - rpcServer.mu guards one serving connection's methods and relays.
//   - rpcCalls.mu guards one calling connection's calls in flight.
//   - rpcTimeouts.mu guards the fast-path calls' timeout queues (a leaf:
//     rpc_timeout.go).

// RPC limits.
const (
	// MaxRPCMethods is how many methods one connection may register.
	MaxRPCMethods = 256
	// rpcPollInterval is how often a call waiting for an offline target
	// asks the broker again (a target registering on this node wakes it at
	// once; one registering on another node is seen by the poll).
	rpcPollInterval = 250 * time.Millisecond
	leaseStripes    = 64
)

// Events of the RPC relay (see protocol).
const (
	EventRPCProgress = protocol.EventRPCProgress
	EventRPCCancel   = protocol.EventRPCCancel
)

// RPCConfig configures the RPC relay. The zero value of every field selects
// its documented default.
type RPCConfig struct {
	// DefaultTimeout bounds a call that names no timeoutMs; default 30 s.
	DefaultTimeout time.Duration `yaml:"default_timeout" doc:"timeout of an RPC call that names none (default 30s)"`
	// MaxTimeout caps timeoutMs; larger values are lowered to it. Default 5 min.
	MaxTimeout time.Duration `yaml:"max_timeout" doc:"largest RPC call timeout; larger timeoutMs values are lowered to it (default 5m)"`
	// OfflineGrace is how long a call waits for an offline target to come
	// back (reconnect and register) before failing with unavailable; default 15 s.
	OfflineGrace time.Duration `yaml:"offline_grace" doc:"how long an RPC call waits for an offline target to reconnect (default 15s)"`
	// LeaseTTL is the lifetime of a device's claim in the broker (the
	// record naming the node that holds the device's newest connection);
	// one hub loop refreshes every claim at a third of it. Default 60 s.
	LeaseTTL time.Duration `yaml:"lease_ttl" doc:"lifetime of a connected device's claim naming its node, refreshed at a third of it (default 60s)"`
	// Grants allow calls between devices of different users. Devices of
	// the same user may always call each other. File only.
	Grants []RPCGrant `yaml:"grants" doc:"cross-user RPC grants (config file only): list of {from_user, to_user, methods}"`
}

// RPCGrant lets the devices of FromUser call Methods on the devices of
// ToUser. "*" as FromUser or ToUser matches any user; a method pattern is a
// name ("files.read"), a prefix ending in ".*" ("files.*") or "*".
type RPCGrant struct {
	FromUser string   `yaml:"from_user"`
	ToUser   string   `yaml:"to_user"`
	Methods  []string `yaml:"methods"`
}

func (c *RPCConfig) setDefaults() {
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 5 * time.Minute
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = min(30*time.Second, c.MaxTimeout)
	}
	if c.OfflineGrace == 0 {
		c.OfflineGrace = 15 * time.Second
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = time.Minute
	}
}

func (c RPCConfig) validate() error {
	switch {
	case c.DefaultTimeout < 0 || c.MaxTimeout < 0 || c.OfflineGrace < 0:
		return errors.New("default_timeout, max_timeout and offline_grace must not be negative")
	case c.LeaseTTL < 0 || (c.LeaseTTL > 0 && c.LeaseTTL < 3*time.Millisecond):
		return errors.New("lease_ttl must be positive")
	case c.MaxTimeout > 0 && c.DefaultTimeout > c.MaxTimeout:
		return errors.New("default_timeout must not exceed max_timeout")
	}
	for i, g := range c.Grants {
		if g.FromUser == "" || g.ToUser == "" || len(g.Methods) == 0 {
			return fmt.Errorf("grants[%d]: from_user, to_user and methods are required", i)
		}
		for _, m := range g.Methods {
			if m != "*" && ValidRPCMethod(strings.TrimSuffix(m, ".*")+".x") != nil {
				return fmt.Errorf("grants[%d]: method pattern %q: want a name, a prefix ending in .* or *", i, m)
			}
		}
	}
	return nil
}

// ValidRPCMethod reports whether name is a valid method name for
// rpc.register: "domain.action" style, two or more dot-separated segments of
// ASCII letters, digits, '_' and '-', at most protocol.MaxMethodLength bytes.
func ValidRPCMethod(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > protocol.MaxMethodLength {
		return fmt.Errorf("longer than %d bytes", protocol.MaxMethodLength)
	}
	if strings.IndexByte(name, '.') < 0 {
		return errors.New(`want "domain.action"`)
	}
	seg := 0 // length of the current segment
	for i := 0; i < len(name); i++ {
		ch := name[i]
		switch {
		case ch == '.':
			if seg == 0 {
				return errors.New("empty segment")
			}
			seg = 0
		case ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-':
			seg++
		default:
			return fmt.Errorf("invalid character %q", ch)
		}
	}
	if seg == 0 {
		return errors.New("empty segment")
	}
	return nil
}

// allowed reports whether caller may call method on a device of targetUser.
func (c RPCConfig) allowed(callerUser, targetUser, method string) bool {
	if callerUser != "" && callerUser == targetUser {
		return true
	}
	for _, g := range c.Grants {
		if (g.FromUser == "*" || g.FromUser == callerUser) && callerUser != "" &&
			(g.ToUser == "*" || g.ToUser == targetUser) && grantCovers(g.Methods, method) {
			return true
		}
	}
	return false
}

// mayList reports whether caller may see any method of targetUser's device.
func (c RPCConfig) mayList(callerUser, targetUser string) bool {
	return c.allowed(callerUser, targetUser, "")
}

// grantCovers reports whether a grant's patterns cover method; an empty
// method asks whether the grant covers anything.
func grantCovers(patterns []string, method string) bool {
	for _, p := range patterns {
		switch {
		case method == "" || p == "*" || p == method:
			return true
		case strings.HasSuffix(p, ".*") && strings.HasPrefix(method, p[:len(p)-1]):
			return true
		}
	}
	return false
}

// rpcRelay is the hub's RPC relay.
type rpcRelay struct {
	h   *Hub // set once
	cfg RPCConfig
	dir Directory // set once (Deps.Broker.Directory)
	// inlineClaims, set once, is true when dir is the in-process
	// MemoryBroker: its claims never wait, so a connection's claim is made
	// in its welcome and cleared in its OnClose (when the device's stripe
	// is free) rather than on a worker (claims.go).
	inlineClaims bool
	node         string // set once
	seed         maphash.Seed
	leases       [leaseStripes]sync.Mutex
	nextID       atomic.Uint64
	// servedRemote counts calls other nodes forwarded here, in flight.
	servedRemote atomic.Int64
	metrics      rpcMetrics
	callMethod   *Method // set once by register: rpc.call's entry, for its metrics
	// timeouts end the calls of the fast paths (rpc_timeout.go).
	timeouts rpcTimeouts

	mu      sync.RWMutex
	servers map[string]*rpcServer              // guarded by mu: serving connection by device id
	waiters map[string]*rpcWaiter              // guarded by mu: calls waiting for the device to register here
	remote  map[string]*remoteCall             // guarded by mu: calls this node forwarded, by call id
	served  map[string]context.CancelCauseFunc // guarded by mu: calls forwarded to this node, by origin/call id
}

// rpcServer is the RPC state of one serving connection, stored with
// Conn.SetValue under rpcServerKey.
type rpcServer struct {
	conn *Conn

	mu      sync.Mutex
	methods map[string]string       // guarded by mu: each registered method, by itself (served returns the stored name)
	relays  map[string]progressSink // guarded by mu: relayed request id → where its progress goes
	hooked  bool                    // guarded by mu: the close hook is registered
}

type rpcServerKey struct{}
type rpcCallsKey struct{}

// rpcCalls are the calls in flight of one calling connection, by the
// caller's request id, for rpc.cancel and the caller's close.
type rpcCalls struct {
	mu    sync.Mutex
	calls map[string]rpcCallEntry // guarded by mu
}

// rpcCallEntry is a call in flight: an Async one that cancel ends, or a
// fast-path one (rpc_fast.go, rpc_forward.go).
type rpcCallEntry struct {
	cancel context.CancelCauseFunc
	inline inlineCaller
}

// inlineCaller is a call started on the caller's read loop (rpc_fast.go,
// rpc_forward.go): cancel ends it for rpc.cancel (errRPCCancelled) or the
// caller's close (errCallerGone).
type inlineCaller interface {
	cancel(cause error)
}

type rpcMetrics struct {
	calls   *prometheus.CounterVec
	okLocal prometheus.Counter // calls{outcome="ok",path="local"}, looked up once
	// okSeconds is the hub's method_seconds{method="rpc.call",outcome="ok"},
	// looked up once: a fast-path call observes it on the read loop.
	okSeconds prometheus.Observer
	progress  prometheus.Counter
	dropped   prometheus.Counter
	serving   prometheus.Gauge
	stale     *prometheus.CounterVec // routes a forwarded call found stale, by reason (rpc_route.go)
	// lostAnswers counts forwarded calls failed because this node's
	// channel was down or broke while they waited (rpc_route.go NodeReceiver).
	lostAnswers prometheus.Counter
	// forwardedInline counts calls forwarded from the caller's read loop
	// (rpc_forward.go).
	forwardedInline prometheus.Counter
}

func newRPCRelay(h *Hub) *rpcRelay {
	r := &rpcRelay{
		h:            h,
		cfg:          h.cfg.RPC,
		dir:          h.deps.Broker.Directory,
		node:         h.cfg.NodeID,
		inlineClaims: isMemoryDirectory(h.deps.Broker.Directory),
		seed:         maphash.MakeSeed(),
		servers:      make(map[string]*rpcServer),
		waiters:      make(map[string]*rpcWaiter),
		remote:       make(map[string]*remoteCall),
		served:       make(map[string]context.CancelCauseFunc),
	}
	r.metrics = rpcMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_rpc_calls_total", Help: "RPC calls relayed, by outcome (ok or error code) and path (local or remote).",
		}, []string{"outcome", "path"}),
		progress: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_rpc_progress_total", Help: "rpc.progress events relayed to callers.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "junction_rpc_progress_dropped_total", Help: "rpc.progress events dropped (unknown call, or a full forwarding queue).",
		}),
		serving: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "junction_rpc_serving_devices", Help: "Devices serving RPC methods on this node.",
		}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_rpc_stale_routes_total", Help: "Forwarded RPC calls whose route to another node proved stale and was looked up again, by reason (offline: the node did not hold the device; unreachable: no node listened).",
		}, []string{"reason"}),
	}
	r.metrics.lostAnswers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "junction_rpc_answer_channel_down_total", Help: "Forwarded RPC calls failed with unavailable because this node's channel was down (reconnecting to the broker) when they would leave or broke while they waited.",
	})
	r.metrics.forwardedInline = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "junction_rpc_forwarded_inline_total", Help: "Cross-node rpc.call forwarded from the caller's read loop, the route cache knowing the target's node (the rest of the forwarded calls ran on a goroutine each).",
	})
	r.metrics.stale.WithLabelValues("offline") // exported at zero from the start
	r.metrics.stale.WithLabelValues("unreachable")
	r.metrics.okLocal = r.metrics.calls.WithLabelValues("ok", "local")
	r.metrics.okSeconds = h.metrics.methodSeconds.WithLabelValues("rpc.call", "ok")
	r.metrics.calls.WithLabelValues("ok", "remote") // exported at zero from the start, as ok/local
	if reg := h.deps.Registerer; reg != nil {
		reg.MustRegister(r.metrics.calls, r.metrics.progress, r.metrics.dropped, r.metrics.serving, r.metrics.stale, r.metrics.lostAnswers, r.metrics.forwardedInline)
	}
	return r
}

// The params types of the RPC methods: the protocol types, validated here.
type (
	rpcRegisterParams protocol.RPCRegisterParams
	rpcCallParams     protocol.RPCCallParams
	rpcListParams     protocol.RPCListParams
	rpcCancelParams   protocol.RPCCancelParams
)

func (p *rpcRegisterParams) Validate() error {
	if len(p.Methods) == 0 {
		return protocol.FieldError("methods", "at least one method is required")
	}
	if len(p.Methods) > MaxRPCMethods {
		return protocol.Errorf(protocol.CodeTooLarge, "at most %d methods per connection", MaxRPCMethods).WithDetail("field", "methods")
	}
	for i, m := range p.Methods {
		if err := ValidRPCMethod(m); err != nil {
			return protocol.FieldError("methods["+strconv.Itoa(i)+"]", "%s", err)
		}
	}
	return nil
}

func (p *rpcCallParams) Validate() error {
	if err := validTarget(p.Target); err != nil {
		return err
	}
	if p.Method == "" {
		return protocol.FieldError("method", "required")
	}
	if err := ValidRPCMethod(p.Method); err != nil {
		return protocol.FieldError("method", "%s", err)
	}
	if p.TimeoutMs < 0 {
		return protocol.FieldError("timeoutMs", "must not be negative")
	}
	if len(p.Params) > 0 && p.Params[0] != '{' && string(p.Params) != "null" {
		return protocol.FieldError("params", "must be an object")
	}
	return nil
}

// decodeFast implements fastParams for the shape every client sends:
// members spelled exactly, once each, strings without escapes.
func (p *rpcCallParams) decodeFast(raw json.RawMessage) bool {
	rp, ok := scanCallParams(raw)
	if !ok {
		return false
	}
	*p = rp.params()
	return true
}

// rawCallParams are rpc.call's params as scanCallParams reads them, their
// strings aliasing the raw params.
type rawCallParams struct {
	hasTarget bool   // "target" is present
	device    []byte // target.deviceId
	method    []byte
	args      json.RawMessage // "params"
	timeoutMs int64
}

// params returns the decoded params.
func (rp *rawCallParams) params() rpcCallParams {
	p := rpcCallParams{Method: string(rp.method), Params: rp.args, TimeoutMs: rp.timeoutMs}
	if rp.hasTarget {
		p.Target = &protocol.RPCTarget{DeviceID: string(rp.device)}
	}
	return p
}

// scanCallParams reads rpc.call's params in the shape decodeFast takes
// without allocating: the fast path of a call looks its target and method
// up with the bytes.
func scanCallParams(raw json.RawMessage) (rawCallParams, bool) {
	var rp rawCallParams
	i := jsonscan.Space(raw, 0)
	if i >= len(raw) || raw[i] != '{' || !utf8.Valid(raw) { // encoding/json replaces invalid UTF-8
		return rp, false
	}
	seen := 0
	end, ok := jsonscan.Object(raw, i, func(key []byte, v int) (int, bool) {
		var bit int
		switch string(key) {
		case "target":
			bit = 1
		case "method":
			bit = 2
		case "params":
			bit = 4
		case "timeoutMs":
			bit = 8
		default:
			return 0, false
		}
		if seen&bit != 0 || v >= len(raw) || raw[v] == 'n' {
			return 0, false
		}
		seen |= bit
		switch bit {
		case 1:
			rp.hasTarget = true
			hasID := false
			return jsonscan.Object(raw, v, func(key []byte, v int) (int, bool) {
				if string(key) != "deviceId" || hasID {
					return 0, false
				}
				hasID = true
				s, end, ok := jsonscan.SimpleString(raw, v)
				rp.device = s
				return end, ok
			})
		case 2:
			s, end, ok := jsonscan.SimpleString(raw, v)
			rp.method = s
			return end, ok
		case 4:
			end, ok := jsonscan.Value(raw, v)
			if !ok {
				return 0, false
			}
			rp.args = raw[v:end:end]
			return end, true
		default:
			n, end, ok := jsonscan.Int(raw, v)
			rp.timeoutMs = n
			return end, ok
		}
	})
	return rp, ok && jsonscan.Space(raw, end) == len(raw)
}

func validTarget(t *protocol.RPCTarget) error {
	switch {
	case t == nil:
		return protocol.FieldError("target", "required")
	case t.DeviceID == "":
		return protocol.FieldError("target.deviceId", "required")
	case len(t.DeviceID) > protocol.MaxIDLength:
		return protocol.FieldError("target.deviceId", "longer than %d bytes", protocol.MaxIDLength)
	}
	return nil
}

func (p *rpcListParams) Validate() error { return validTarget(p.Target) }

func (p *rpcCancelParams) Validate() error {
	if p.ID == "" {
		return protocol.FieldError("id", "required")
	}
	return nil
}

// register adds the RPC methods and events to the hub's table.
func (r *rpcRelay) register() {
	h := r.h
	h.AddFeature("rpc")
	register, registered := reflect.TypeFor[protocol.RPCRegisterParams](), reflect.TypeFor[protocol.RPCRegisterResult]()
	Handle(h, Method{Name: "rpc.register", Scope: ScopeAuthenticated, Params: register, Result: registered}, r.handleRegister)
	Handle(h, Method{Name: "rpc.unregister", Scope: ScopeAuthenticated, Params: register, Result: registered}, r.handleUnregister)
	// The result is the target's: any JSON value.
	Handle(h, Method{Name: "rpc.call", Scope: auth.ScopeWrite, AppScope: auth.ScopeRPCCall, Mode: Async, Start: r.startCall,
		Params: reflect.TypeFor[protocol.RPCCallParams](), Result: reflect.TypeFor[json.RawMessage]()}, r.handleCall)
	r.callMethod = h.methods["rpc.call"]
	Handle(h, Method{Name: "rpc.list", Scope: auth.ScopeRead, AppScope: auth.ScopeRPCCall, Mode: Async, Params: reflect.TypeFor[protocol.RPCListParams](), Result: reflect.TypeFor[protocol.RPCListResult]()}, r.handleList)
	Handle(h, Method{Name: "rpc.cancel", Scope: ScopeAuthenticated, Mode: Inline, Params: reflect.TypeFor[protocol.RPCCancelParams](), Result: reflect.TypeFor[protocol.RPCCancelResult]()}, r.handleCancel)
	h.HandleEvent(EventRPCProgress, r.handleProgress)
}

// mayServe reports whether p may register methods: a machine or an iot
// device (a relay serving relay.set), or a device
// whose credential holds rpc.serve.
func mayServe(p *auth.Principal) bool {
	return p.DeviceID != "" && p.UserID != "" && (p.Kind == "machine" || p.Kind == KindIoT || p.HasScope(auth.ScopeRPCServe))
}

func (r *rpcRelay) stripe(device string) *sync.Mutex {
	return &r.leases[maphash.String(r.seed, device)%leaseStripes]
}

func serverOf(c *Conn) *rpcServer {
	s, _ := c.Value(rpcServerKey{}).(*rpcServer)
	return s
}

func (r *rpcRelay) handleRegister(ctx context.Context, call *Call, p *rpcRegisterParams) (any, error) {
	pr := call.Principal
	if !mayServe(pr) {
		return nil, protocol.Errorf(protocol.CodeForbidden, "registering methods needs a machine or scope %q", auth.ScopeRPCServe)
	}
	c := call.Conn
	srv := serverOf(c)
	if srv == nil {
		srv = &rpcServer{conn: c, methods: make(map[string]string), relays: make(map[string]progressSink)}
		c.SetValue(rpcServerKey{}, srv) // rpc.register is Serial: no concurrent creation
	}
	srv.mu.Lock()
	n := len(srv.methods)
	for _, m := range p.Methods {
		if _, ok := srv.methods[m]; !ok {
			n++
		}
	}
	if n > MaxRPCMethods {
		srv.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeTooLarge, "at most %d methods per connection", MaxRPCMethods).WithDetail("field", "methods")
	}
	for _, m := range p.Methods {
		srv.methods[m] = m
	}
	hook := !srv.hooked
	srv.hooked = true
	methods := srv.methodList()
	srv.mu.Unlock()
	if hook {
		c.AfterClose(r.serverClosed)
	}

	// The answer waits until the methods are callable: the device's claim
	// names this node and waiting calls were woken.
	device := pr.DeviceID
	if r.claimOf(ctx, c) == 0 {
		if c.Closed() {
			return nil, protocol.Errorf(protocol.CodeUnavailable, "connection closed")
		}
		return nil, protocol.Errorf(protocol.CodeUnavailable, "cannot register now")
	}
	l := r.stripe(device)
	l.Lock()
	defer l.Unlock()
	if c.Closed() {
		return nil, protocol.Errorf(protocol.CodeUnavailable, "connection closed")
	}
	r.mu.Lock()
	first := r.servers[device] != srv
	r.servers[device] = srv
	wake := r.waiters[device]
	delete(r.waiters, device)
	r.mu.Unlock()
	if wake != nil {
		close(wake.ch)
	}
	if first {
		r.metrics.serving.Inc()
		r.announce(ctx, pr, protocol.MachineOnline)
	}
	return protocol.RPCRegisterResult{Methods: methods}, nil
}

func (s *rpcServer) methodList() []string {
	out := make([]string, 0, len(s.methods))
	for m := range s.methods {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func (s *rpcServer) has(method string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.methods[method]
	return ok
}

// served returns the name of method, read from raw params, when s serves
// it: the stored string, where converting method would allocate one per
// call.
func (s *rpcServer) served(method []byte) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.methods[string(method)]
	return name, ok
}

func (r *rpcRelay) handleUnregister(ctx context.Context, call *Call, p *rpcRegisterParams) (any, error) {
	srv := serverOf(call.Conn)
	if srv == nil {
		return protocol.RPCRegisterResult{Methods: []string{}}, nil
	}
	srv.mu.Lock()
	for _, m := range p.Methods {
		delete(srv.methods, m)
	}
	methods := srv.methodList()
	srv.mu.Unlock()
	// The device stays online (its lease stays) with fewer methods: calls
	// to the removed ones answer unknown_method.
	return protocol.RPCRegisterResult{Methods: methods}, nil
}

// serverClosed drops a serving connection's registrations and its lease,
// unless a newer connection of the device took over already.
func (r *rpcRelay) serverClosed(c *Conn) {
	srv := serverOf(c)
	if srv == nil {
		return
	}
	srv.targetClosed()
	p := c.Principal()
	drop := func(ctx context.Context) {
		l := r.stripe(p.DeviceID)
		l.Lock()
		defer l.Unlock()
		r.mu.Lock()
		mine := r.servers[p.DeviceID] == srv
		if mine {
			delete(r.servers, p.DeviceID)
		}
		r.mu.Unlock()
		if !mine {
			return
		}
		r.metrics.serving.Dec()
		r.announce(ctx, p, protocol.MachineOffline)
	}
	// The close hook runs on the transport's path: broker I/O goes to a
	// goroutine of the hub's, except while the hub closes (it waits for
	// none then).
	if r.h.closed.Load() {
		drop(context.Background())
		return
	}
	r.h.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		drop(ctx)
	})
}

// announce publishes a machine's status change on its owner's
// user:{userId} channel, so subscribers on every node see it.
func (r *rpcRelay) announce(ctx context.Context, p *auth.Principal, status string) {
	data, err := jsonMarshal(protocol.MachinePublication{Machine: &protocol.MachineStatus{Status: status, UserID: p.UserID, DeviceID: p.DeviceID, Kind: p.Kind, NodeID: r.node}})
	if err != nil {
		return
	}
	if _, err := r.h.Publish(context.WithoutCancel(ctx), "user:"+p.UserID, data); err != nil && !errors.Is(err, ErrBrokerClosed) {
		r.h.log.Warn("rpc: publish machine status", "user", p.UserID, "device", p.DeviceID, "status", status, "err", err)
	}
}

// localServer returns the live serving connection of device on this node.
func (r *rpcRelay) localServer(device string) *rpcServer {
	r.mu.RLock()
	s := r.servers[device]
	r.mu.RUnlock()
	if s == nil || s.conn.Closed() {
		return nil
	}
	return s
}

func (r *rpcRelay) handleList(ctx context.Context, call *Call, p *rpcListParams) (any, error) {
	caller := callerOf(call.Principal)
	device := p.Target.DeviceID
	if s := r.localServer(device); s != nil {
		return r.listLocal(caller, s)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DefaultTimeout)
	defer cancel()
	for fresh := false; ; fresh = true {
		node, ok, err := r.route(ctx, device, fresh)
		if err != nil {
			r.h.log.Error("rpc: device node", "device", device, "err", err)
			return nil, protocol.Errorf(protocol.CodeUnavailable, "cannot locate the target now")
		}
		if !ok || node == r.node {
			return nil, errOffline()
		}
		res, miss, err := r.forward(ctx, call.Conn.Done(), node, &nodeMsg{Kind: nodeList, Device: device, Caller: caller}, nil)
		if miss != reached && r.staleRoute(device, node, miss == missUnreachable) && !fresh {
			continue // look again at once (rpc_route.go)
		}
		if miss == missOffline {
			return nil, errOffline()
		}
		if err != nil {
			return nil, err
		}
		return res, nil
	}
}

// listLocal answers rpc.list for a device serving on this node.
func (r *rpcRelay) listLocal(caller *protocol.Caller, s *rpcServer) (protocol.RPCListResult, error) {
	tp := s.conn.Principal()
	if !r.cfg.mayList(caller.UserID, tp.UserID) {
		return protocol.RPCListResult{}, errForbidden()
	}
	s.mu.Lock()
	all := s.methodList()
	s.mu.Unlock()
	out := make([]string, 0, len(all))
	for _, m := range all {
		if r.cfg.allowed(caller.UserID, tp.UserID, m) {
			out = append(out, m)
		}
	}
	return protocol.RPCListResult{DeviceID: tp.DeviceID, Methods: out}, nil
}

func (r *rpcRelay) handleCancel(_ context.Context, call *Call, p *rpcCancelParams) (any, error) {
	calls, _ := call.Conn.Value(rpcCallsKey{}).(*rpcCalls)
	if calls == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no rpc.call %q in flight", p.ID)
	}
	calls.mu.Lock()
	e := calls.calls[p.ID]
	calls.mu.Unlock()
	switch {
	case e.inline != nil:
		// The call's answer follows this one's, as for an Async call.
		call.AfterReply(func() { e.inline.cancel(errRPCCancelled) })
	case e.cancel != nil:
		e.cancel(errRPCCancelled)
	default:
		return nil, protocol.Errorf(protocol.CodeNotFound, "no rpc.call %q in flight", p.ID)
	}
	return protocol.RPCCancelResult{Cancelled: true}, nil
}

func callerOf(p *auth.Principal) *protocol.Caller {
	return &protocol.Caller{UserID: p.UserID, DeviceID: p.DeviceID, AppID: p.AppID}
}

func errForbidden() *protocol.Error {
	return protocol.Errorf(protocol.CodeForbidden, "not allowed to call this device")
}

func errOffline() *protocol.Error {
	return protocol.Errorf(protocol.CodeUnavailable, "target device is offline")
}

func errUnknownRPCMethod(method string) *protocol.Error {
	return protocol.Errorf(protocol.CodeUnknownMethod, "the target does not serve %q", method)
}
