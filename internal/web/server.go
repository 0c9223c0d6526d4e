// Package web is Junction's front door and HTTP edge: one mux on one port
// that serves the WebSocket gateway (/ws), the REST API (/api/v1: its own
// routes, and the account application's operations mounted by one generic
// adapter), Prometheus metrics, health and readiness, and the embedded
// console for every other path. It owns the mapping from protocol error
// codes to HTTP statuses.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/schedule"
	"github.com/junctionhq/junction/protocol"
)

// Version is the server version reported by /api/v1/info; set by cmd/junction.
var Version = "dev"

// Config configures the HTTP edge. The zero value of every field selects its
// documented default.
type Config struct {
	// AllowedOrigins lists the browser origins allowed to open a WebSocket
	// besides the server's own origin: "https://app.example.com",
	// "https://*.example.com", or "*".
	AllowedOrigins []string `yaml:"allowed_origins" doc:"browser origins allowed besides same-origin, comma-separated (https://app.example.com, https://*.example.com, *)"`
	// PublicHosts are the host names clients use to reach this server
	// (besides loopback, IP addresses and the listen address's host): a
	// browser page is same-origin only when its Host is one of them, which
	// defeats DNS rebinding.
	PublicHosts []string `yaml:"public_hosts" doc:"host names this server is reached by (gw.example.com, *.example.com), trusted by the same-origin check besides localhost, IP addresses and the listen address's host"`
	// Lockdown refuses every client outside loopback, private LAN ranges and
	// the Tailscale range with 503, before authentication.
	Lockdown bool `yaml:"lockdown" doc:"refuse clients outside loopback, LAN and Tailscale ranges (kill switch)"`
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies" doc:"CIDR ranges of reverse proxies whose X-Forwarded-For is trusted"`
	// MaxBodyBytes limits a REST request body; default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes" doc:"largest REST request body in bytes (default 1048576)"`
	// AllowQueryToken accepts ?token= on /ws (the least safe way: URLs get
	// logged). Default true, as documented.
	DisableQueryToken bool `yaml:"disable_query_token" doc:"refuse credentials passed as ?token= on /ws"`
	// Rate limits, token buckets: a rate a second sustained and a burst at
	// once. Zero selects the default; a negative rate disables the limit.
	// Per client address (IPv6 per /64; loopback is not limited by
	// address), 429 with Retry-After over it.
	HandshakeRate  int `yaml:"handshake_rate" doc:"WebSocket handshakes one client address may open per second, sustained; over it GET /ws answers 429 with Retry-After before the upgrade (default 50, negative disables; loopback is not limited)"`
	HandshakeBurst int `yaml:"handshake_burst" doc:"WebSocket handshakes one client address may open at once (default 200)"`
	RESTRate       int `yaml:"rest_rate" doc:"REST requests one client address may make per second, sustained; over it 429 with Retry-After (default 2000, negative disables; loopback is not limited)"`
	RESTBurst      int `yaml:"rest_burst" doc:"REST requests one client address may make at once (default 4000)"`
	AuthRate       int `yaml:"auth_rate" doc:"requests to /api/v1/auth/* and /api/v1/devices/pair one client address may make per second, sustained, on top of rest_rate (auth.challenges has its own limit too); over it 429 with Retry-After (default 10, negative disables)"`
	AuthBurst      int `yaml:"auth_burst" doc:"requests to the auth endpoints one client address may make at once (default 40)"`
	PrincipalRate  int `yaml:"principal_rate" doc:"authenticated REST requests one user (all its devices and tokens) may make per second, sustained; over it 429 with Retry-After (default 1000, negative disables; principals with scope admin are not limited per user)"`
	PrincipalBurst int `yaml:"principal_burst" doc:"authenticated REST requests one user may make at once (default 2000)"`
}

// ReadyCheck is one dependency /readyz checks.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
	// Parts, when set, are the dependencies behind the check (each Redis
	// shard and the node lease behind "broker"), checked one by one and
	// reported under "dependencies" (ready.go); the check fails when one
	// does, and Check is not used.
	Parts []ReadyPart
}

// ReadyDetail is one member of /readyz's "details": information about a
// part of the server (the supervised services' states), not a check: it
// does not change the status.
type ReadyDetail struct {
	Name   string
	Detail func() any
}

// Deps are the edge's collaborators.
type Deps struct {
	Hub           *hub.Hub
	Authenticator *auth.Authenticator
	Network       *auth.NetworkPolicy
	Origins       *auth.OriginPolicy
	Logger        *slog.Logger
	// Registerer receives the edge's metrics; Gatherer is what /metrics serves.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	Ready      []ReadyCheck
	// ReadyDetails are added to /readyz's body under "details".
	ReadyDetails []ReadyDetail
	// Account, when set, is mounted over REST: key login, devices and
	// pairing, encrypted data, update sync (its WebSocket methods are in the
	// hub's method table: account.Service.Register).
	Account *account.Service
	// Schedule, when set, serves the admin API of scheduled jobs
	// (/api/v1/admin/schedules); without it those routes answer not_found.
	Schedule *schedule.Scheduler
	// Apps, when set, is the apps platform's op table (apps.Service.Ops),
	// mounted over REST with the same adapter as Account's.
	Apps []account.Op
	// Proxied, when set, returns the method routes of the backend proxy
	// as configured now, for the AsyncAPI document (they change on reload).
	Proxied func() []protocol.ProxiedSpec
	// Upgrade, when set, checks WebSocket upgrades after the credential
	// verified (the apps platform's start tickets).
	Upgrade UpgradeHook
	// Rates, when set, holds web.principal_rate across the nodes of a
	// cluster (limits_shared.go); nil: each node limits alone.
	Rates SharedRates
}

// UpgradeHook checks and follows WebSocket upgrades.
type UpgradeHook interface {
	// BeforeUpgrade runs once the credential verified, before the upgrade:
	// an error refuses it (a *protocol.Error is answered as is, anything
	// else as unavailable); the principal it returns is the connection's.
	BeforeUpgrade(r *http.Request, p *auth.Principal) (*auth.Principal, error)
	// Upgraded runs once the connection is registered.
	Upgraded(r *http.Request, c *hub.Conn)
}

// Server is the HTTP edge.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	limits  *limits
	console fs.FS
	panics  *panicLog // set once by New

	patterns []string // registered routes, filled by New

	openAPIOnce  sync.Once // the OpenAPI document, encoded once per server
	openAPIJSON  []byte
	asyncAPIMu   sync.Mutex // leaf
	asyncAPIKey  string     // guarded by asyncAPIMu: the proxied routes asyncAPIJSON was built with
	asyncAPIJSON []byte     // guarded by asyncAPIMu: the encoded document, nil before the first request

	ready readiness // the last errors of /readyz's dependencies
}

// New builds the edge and its routes.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if deps.Hub == nil || deps.Authenticator == nil || deps.Network == nil || deps.Origins == nil {
		return nil, errors.New("web: hub, authenticator, network and origin policies are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	console, err := fs.Sub(consoleFS, "console")
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, mux: http.NewServeMux(), console: console,
		panics: &panicLog{log: deps.Logger}}
	s.metrics = newMetrics(deps.Registerer)
	s.limits = newLimits(cfg, deps.Registerer)
	if deps.Account != nil {
		s.mountAccount(deps.Account)
		s.mountOps(deps.Apps)
	}
	s.routes()
	deps.Hub.OnClusterEvent(lockdownEvent, s.handleLockdownEvent)
	return s, nil
}

func (s *Server) routes() {
	s.handle("GET /ws", s.serveWS)
	s.handle("GET /ws/iot", s.serveIoT)
	s.handle("GET /api/v1/info", s.serveInfo)
	s.handle("GET /api/v1/asyncapi.json", s.serveAsyncAPI)
	s.handle("GET /api/v1/admin/lockdown", s.requireScope(auth.ScopeAdmin, s.serveLockdownGet))
	s.handle("POST /api/v1/admin/lockdown", s.requireScope(auth.ScopeAdmin, s.serveLockdownSet))
	s.channelRoutes()
	s.scheduleRoutes()
	s.adminRoutes()
	s.handle("GET /healthz", s.serveHealth)
	s.handle("GET /readyz", s.serveReady)
	if s.deps.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.deps.Gatherer, promhttp.HandlerOpts{}))
	}
	s.handle("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.handle("/", s.serveConsole)
}

// Handle adds a route (a net/http pattern) to the mux, with metrics. Later
// parts of the API register themselves with it before the server starts.
func (s *Server) Handle(pattern string, fn http.HandlerFunc) { s.handle(pattern, fn) }

func (s *Server) handle(pattern string, fn http.HandlerFunc) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, fn)
}

// ServeHTTP routes a request. Lockdown is enforced here, before anything
// else runs, for every path. A panic in a handler drops the connection and
// is logged at most once per panicLogEvery (net/http would log every one).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer s.panics.recoverRequest("http", r)
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	if !s.deps.Network.Allowed(r) {
		s.metrics.authFailures.WithLabelValues("lockdown").Inc()
		rw.Header().Set("Connection", "close")
		writeJSONError(rw, http.StatusServiceUnavailable, protocol.Errorf(protocol.CodeUnavailable, "this server is in lockdown: only local networks may connect"))
	} else if pe := s.limitREST(r); pe != nil {
		writeError(rw, pe)
	} else {
		if r.Body != nil && r.ContentLength != 0 && !strings.HasPrefix(r.URL.Path, "/ws") {
			r.Body = http.MaxBytesReader(rw, r.Body, s.cfg.MaxBodyBytes)
		}
		s.mux.ServeHTTP(rw, r)
	}
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	if (route == "GET /ws" || route == "GET /ws/iot") && rw.status == http.StatusSwitchingProtocols {
		return // a WebSocket's life is not an HTTP latency
	}
	s.metrics.httpSeconds.WithLabelValues(route, statusClass(rw.status)).Observe(time.Since(start).Seconds())
}

// Principal authenticates a REST request from its Authorization header.
func (s *Server) Principal(r *http.Request) (*auth.Principal, error) {
	cred, ok := auth.CredentialFromRequest(r)
	if !ok || cred.Source != "header" {
		s.metrics.authFailures.WithLabelValues("missing").Inc()
		return nil, protocol.Errorf(protocol.CodeUnauthorized, "missing credential: send Authorization: Bearer <token>")
	}
	p, err := s.authenticate(r, cred.Value)
	if err != nil {
		return nil, s.authError(err)
	}
	if pe := s.limitPrincipal(p); pe != nil {
		return nil, pe
	}
	if pe := s.limitPrincipalShared(r.Context(), p); pe != nil {
		return nil, pe
	}
	return p, nil
}

// authenticate verifies a credential of r; an app key with the
// Junction-User header acts for that user (auth.Authenticator.ForUser).
func (s *Server) authenticate(r *http.Request, credential string) (*auth.Principal, error) {
	p, err := s.deps.Authenticator.Authenticate(r.Context(), credential)
	if err != nil {
		return nil, err
	}
	if user := r.Header.Get(auth.UserHeader); user != "" {
		return s.deps.Authenticator.ForUser(r.Context(), p, user)
	}
	return p, nil
}

// authError turns a failed authentication into the error the client gets:
// unauthorized naming the reason (counted; forbidden for an app key naming
// a user who has not installed the app), or unavailable when a store
// behind the Authenticator failed (logged once here).
func (s *Server) authError(err error) error {
	if _, ok := errors.AsType[*auth.Failure](err); !ok {
		s.log.Error("authentication failed", "err", err)
		return protocol.Errorf(protocol.CodeUnavailable, "storage unavailable")
	}
	reason := auth.FailureReason(err)
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	if reason == auth.ReasonNotInstalled {
		return protocol.Errorf(protocol.CodeForbidden, "the user has not installed this app").WithDetail("reason", reason)
	}
	return protocol.Errorf(protocol.CodeUnauthorized, "invalid credential: %s", reason)
}

// requireScope wraps a handler that needs an authenticated principal with scope.
func (s *Server) requireScope(scope string, fn func(http.ResponseWriter, *http.Request, *auth.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Principal(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if scope != hub.ScopeAuthenticated && !p.HasScope(scope) {
			writeError(w, protocol.Errorf(protocol.CodeForbidden, "this endpoint needs scope %q", scope))
			return
		}
		fn(w, r, p)
	}
}

// serveWS authenticates and upgrades a WebSocket. Nothing is upgraded unless
// the origin is allowed and the credential verifies. A client offering the
// subprotocol junction.compact.v1 speaks the compact protocol (docs/iot.md).
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) { s.upgradeWS(w, r, false) }

// serveIoT is /ws/iot: serveWS for the compact protocol, tokens of kind iot
// only (403 forbidden for another kind), under the iot.* limits.
func (s *Server) serveIoT(w http.ResponseWriter, r *http.Request) { s.upgradeWS(w, r, true) }

func (s *Server) upgradeWS(w http.ResponseWriter, r *http.Request, iot bool) {
	// A refused handshake ends the HTTP connection: the client will dial
	// again rather than reuse it. (The front door closes every connection
	// it does not upgrade, so it is not told: an upgrade then makes no
	// header map.)
	if !servedByFront(w) {
		w.Header().Set("Connection", "close")
	}
	if err := s.deps.Origins.Check(r); err != nil {
		s.metrics.authFailures.WithLabelValues("origin").Inc()
		writeError(w, protocol.Errorf(protocol.CodeForbidden, "origin not allowed"))
		return
	}
	if s.deps.Hub.Draining() {
		w.Header().Set("Retry-After", "1")
		writeError(w, protocol.Errorf(protocol.CodeUnavailable, "server is shutting down"))
		return
	}
	// Before the credential is verified (the costly part): a client address
	// over its handshake rate is refused outright.
	if pe := s.limitHandshake(r); pe != nil {
		writeError(w, pe)
		return
	}
	cred, ok := auth.CredentialFromRequest(r)
	if !ok || (cred.Source == "query" && s.cfg.DisableQueryToken) {
		s.metrics.authFailures.WithLabelValues("missing").Inc()
		writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "missing credential: use Authorization: Bearer, the junction.bearer.<token> subprotocol, or ?token="))
		return
	}
	// Authenticate also refuses a revoked device (auth.Revocations).
	p, err := s.authenticate(r, cred.Value)
	if err != nil {
		writeError(w, s.authError(err))
		return
	}
	if s.deps.Upgrade != nil {
		if p, err = s.deps.Upgrade.BeforeUpgrade(r, p); err != nil {
			if _, ok := errors.AsType[*protocol.Error](err); !ok {
				s.log.Error("websocket upgrade check failed", "err", err)
				err = protocol.Errorf(protocol.CodeUnavailable, "storage unavailable")
			}
			writeError(w, err)
			return
		}
	}
	var c *hub.Conn
	switch {
	case iot:
		sub := ""
		if auth.OffersCompactSubprotocol(r) {
			sub = protocol.CompactSubprotocol
		}
		c, err = s.deps.Hub.UpgradeIoT(w, r, p, sub)
	case auth.OffersCompactSubprotocol(r):
		c, err = s.deps.Hub.UpgradeCompact(w, r, p)
	default:
		sub := ""
		if auth.OffersSubprotocol(r) {
			sub = protocol.Subprotocol
		}
		c, err = s.deps.Hub.Upgrade(w, r, p, sub)
	}
	if err != nil {
		if le, ok := errors.AsType[*hub.ConnLimitError](err); ok {
			s.limits.refused.WithLabelValues(le.Limit).Inc()
		}
		var pe *protocol.Error
		if errors.As(err, &pe) {
			writeError(w, pe)
		}
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	// A revocation that committed after the check above and closed the
	// device's connections before this one was registered missed it; it has
	// invalidated the cached answer by then, so asking again now (the
	// connection is registered, later revocations will find it) sees it.
	// For an app: a key revoked, an uninstall or a narrowed grant meanwhile.
	if s.revokedSinceHandshake(r.Context(), c) {
		s.metrics.authFailures.WithLabelValues(auth.ReasonRevoked).Inc()
		c.Close(protocol.CloseForbidden, protocol.CloseReason(protocol.CloseForbidden))
		return
	}
	// Behind a trusted proxy the client is not the peer: keep its address
	// for the lockdown sweep (the peer's is asked of the socket then).
	if s.deps.Network.TrustsProxies() {
		c.SetValue(clientAddrKey{}, s.deps.Network.ClientAddr(r))
	}
	// The same for lockdown: one turned on after ServeHTTP's check swept
	// the connections before this one was registered; asking again now
	// (later sweeps will find it) sees it.
	if !s.deps.Network.Allowed(r) {
		s.metrics.authFailures.WithLabelValues("lockdown").Inc()
		c.Disconnect(protocol.DisconnectLockdown)
		return
	}
	if s.deps.Upgrade != nil {
		s.deps.Upgrade.Upgraded(r, c)
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) { // the arguments cost allocations even when not logged
		s.log.Debug("connected", "conn", c.ID(), "user", p.UserID, "device", p.DeviceID, "kind", p.Kind)
	}
}

// revokedSinceHandshake reports whether c's principal was revoked since
// the handshake authenticated it. An app's grant narrowed meanwhile is not
// a revocation: the connection keeps the scopes still granted, as the apps
// service does for the live connections it finds when the grant narrows —
// whether it found this one (the connection's principal is checked, not
// the handshake's) or not (it was registered after). A narrowing applied
// here is stored only if no other replaced the principal since it was read
// (hub.ReauthorizeFrom), else the check runs again; after a few rounds the
// connection fails closed.
func (s *Server) revokedSinceHandshake(ctx context.Context, c *hub.Conn) bool {
	for range 4 {
		p := c.Principal()
		np, err := s.deps.Authenticator.Current(ctx, p)
		switch {
		case auth.FailureReason(err) == auth.ReasonRevoked:
			return true
		case err != nil, np == p:
			return false // a fault is left to later requests, as at the handshake's own check
		}
		ok, err := s.deps.Hub.ReauthorizeFrom(ctx, c, p, np)
		if err != nil {
			s.log.Warn("narrow a new connection to its app's grant; closing", "conn", c.ID(), "err", err)
			return true
		}
		if ok {
			return false
		}
	}
	return true
}

func (s *Server) serveInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, protocol.ServerInfo{
		Name: "junction", Version: Version, Protocol: protocol.Version,
		NodeID: s.deps.Hub.NodeID(), WS: "/ws", WSIoT: "/ws/iot", Lockdown: s.deps.Network.Lockdown(),
	})
}

func (s *Server) serveLockdownGet(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	on := s.deps.Network.Lockdown()
	writeJSON(w, http.StatusOK, protocol.Lockdown{Enabled: &on})
}

func (s *Server) serveLockdownSet(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var body protocol.Lockdown
	if err := DecodeJSON(r, &body); err != nil {
		writeError(w, err)
		return
	}
	if body.Enabled == nil {
		writeError(w, protocol.FieldError("enabled", "required (true or false)"))
		return
	}
	on := *body.Enabled
	err := s.deps.Network.SetLockdown(on)
	closed := s.lockdownSweep()
	if err != nil {
		s.log.Error("lockdown changed in memory only", "enabled", s.deps.Network.Lockdown(), "err", err)
		if on {
			writeError(w, protocol.Errorf(protocol.CodeUnavailable, "lockdown is on, but could not be recorded in the data directory: it will not survive a restart"))
		} else {
			writeError(w, protocol.Errorf(protocol.CodeUnavailable, "lockdown is still on: its record in the data directory could not be removed"))
		}
		return
	}
	s.log.Warn("lockdown changed", "enabled", on, "closed", closed, "user", p.UserID, "device", p.DeviceID)
	// Every other node of a cluster follows (handleLockdownEvent).
	data, _ := json.Marshal(lockdownEventData{Enabled: on, Origin: s.deps.Hub.NodeID()})
	if err := s.deps.Hub.PublishClusterEvent(context.WithoutCancel(r.Context()), lockdownEvent, data); err != nil {
		s.log.Error("lockdown changed on this node only", "enabled", on, "err", err)
		writeError(w, protocol.Errorf(protocol.CodeUnavailable, "lockdown changed on this node, but the other nodes could not be told: try again"))
		return
	}
	writeJSON(w, http.StatusOK, protocol.Lockdown{Enabled: body.Enabled})
}

// lockdownEvent is the kind of the cluster event that carries the lockdown
// switch to every node; the last one is the cluster's state, read by a
// node at start (SyncLockdown).
const lockdownEvent = "lockdown"

type lockdownEventData struct {
	Enabled bool   `json:"enabled"`
	Origin  string `json:"origin"`
}

// lockdownSweep closes, when lockdown is on, the connections from addresses
// it refuses (4010), not only refusing new ones: the kill switch. It returns
// how many it closed.
func (s *Server) lockdownSweep() int {
	if !s.deps.Network.Lockdown() {
		return 0
	}
	return s.deps.Hub.DisconnectWhere(protocol.DisconnectLockdown, func(c *hub.Conn) bool {
		return !auth.LocalAddr(s.connAddr(c))
	})
}

// handleLockdownEvent applies the lockdown switch another node turned. It
// runs on the hub's event delivery path; the data directory's record is a
// small synced write.
func (s *Server) handleLockdownEvent(data json.RawMessage) {
	var e lockdownEventData
	if err := json.Unmarshal(data, &e); err != nil {
		s.log.Warn("bad lockdown event", "err", err)
		return
	}
	if e.Origin == s.deps.Hub.NodeID() {
		return // applied by serveLockdownSet
	}
	s.applyLockdown(e)
}

func (s *Server) applyLockdown(e lockdownEventData) {
	err := s.deps.Network.SetLockdown(e.Enabled)
	closed := s.lockdownSweep()
	if err != nil {
		s.log.Error("lockdown changed in memory only", "enabled", s.deps.Network.Lockdown(), "node", e.Origin, "err", err)
	}
	s.log.Warn("lockdown changed by another node", "enabled", e.Enabled, "node", e.Origin, "closed", closed)
}

// SyncLockdown applies the cluster's lockdown state (the last lockdown
// event the broker retains), if any, so that a node started after the
// switch was turned follows it. Call it after the hub started. On one node
// (the memory broker) nothing is retained across restarts: the data
// directory's record is the state.
func (s *Server) SyncLockdown(ctx context.Context) error {
	data, ok, err := s.deps.Hub.LastClusterEvent(ctx, lockdownEvent)
	if err != nil || !ok {
		return err
	}
	var e lockdownEventData
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("web: lockdown state: %w", err)
	}
	if e.Enabled != s.deps.Network.Lockdown() {
		s.applyLockdown(e)
	}
	return nil
}

// clientAddrKey keys a connection's client address (a netip.Addr) when a
// trusted proxy forwarded it.
type clientAddrKey struct{}

// connAddr returns the client address of a WebSocket connection: the one
// a trusted proxy forwarded, or the peer's; the zero Addr when unknown.
func (s *Server) connAddr(c *hub.Conn) netip.Addr {
	if a, ok := c.Value(clientAddrKey{}).(netip.Addr); ok {
		return a
	}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status, body := s.readiness(ctx)
	writeJSON(w, status, body)
}

// DecodeJSON decodes a request body strictly into v: unknown members, wrong
// types and trailing data are bad_request errors naming the field; an
// oversized body is too_large.
func DecodeJSON(r *http.Request, v any) error {
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	return hub.DecodeParams(raw, v)
}

// readBody reads a required JSON body: too_large past MaxBodyBytes,
// bad_request when it is empty.
func readBody(r *http.Request) (json.RawMessage, error) {
	if r.Body == nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "a JSON body is required")
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, protocol.Errorf(protocol.CodeTooLarge, "request body is over %d bytes", mbe.Limit)
		}
		return nil, protocol.Errorf(protocol.CodeBadRequest, "reading the body failed")
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "a JSON body is required")
	}
	return raw, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// WriteError writes err as a JSON error body with the status its code maps to.
func WriteError(w http.ResponseWriter, err error) { writeError(w, err) }

func writeError(w http.ResponseWriter, err error) {
	pe := protocol.AsError(err)
	writeJSONError(w, Status(pe.Code), pe)
}

func writeJSONError(w http.ResponseWriter, status int, pe *protocol.Error) {
	if pe.RetryAfterMs > 0 {
		w.Header().Set("Retry-After", itoa((pe.RetryAfterMs+999)/1000))
	}
	writeJSON(w, status, protocol.ErrorBody{Error: pe})
}

// Status maps a protocol error code to its HTTP status. This is the one
// place that mapping is defined.
func Status(code protocol.Code) int {
	switch code {
	case protocol.CodeBadRequest, protocol.CodeInvalidFrame:
		return http.StatusBadRequest
	case protocol.CodeUnauthorized:
		return http.StatusUnauthorized
	case protocol.CodeForbidden:
		return http.StatusForbidden
	case protocol.CodeNotFound, protocol.CodeUnknownMethod:
		return http.StatusNotFound
	case protocol.CodeConflict:
		return http.StatusConflict
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeTimeout:
		return http.StatusGatewayTimeout
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
