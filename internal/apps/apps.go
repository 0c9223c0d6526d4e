// Package apps is the apps platform: third-party app backends registered
// by an operator, their API keys, and users' installations of them with the
// scopes they grant.
//
// Its operations are one op table (Service.Ops), built with the account
// application's op machinery (account.Define: strict decode, idempotency,
// store errors mapped to protocol errors), mounted over REST by web and
// registered as WebSocket methods by Register. The Service is also the
// store behind auth's API keys (auth.APIKeyStore: keys looked up by id,
// their last use written coalesced) and installations (auth.Installations:
// what an app key acting for a user may do).
//
// Revocation is immediate: a REST request authenticates every time, and on
// live WebSocket connections an uninstall, a revoked key or a deleted app
// closes the app's connections (4003), a narrowed installation or a
// rotation replaces their principal and rechecks their subscriptions
// (hub.Hub.Reauthorize).
package apps

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
)

// Config tunes the platform. The zero value of every field selects its
// default.
type Config struct {
	// LastUseInterval is how often the last use of API keys is written to
	// the store, all keys used since in one transaction; default 1 min.
	LastUseInterval time.Duration `yaml:"last_use_interval" doc:"how often the last use of API keys is written to the database, all keys used since in one transaction (default 1m)"`
	// RotationOverlap is how long an app's other keys keep working after a
	// rotation that does not say; default 24 h.
	RotationOverlap time.Duration `yaml:"rotation_overlap" doc:"how long an app's other API keys keep working after a key rotation that names no overlap (default 24h)"`

	// WebhookTimeout bounds one webhook attempt; default 10 s.
	WebhookTimeout time.Duration `yaml:"webhook_timeout" doc:"one webhook attempt, request to response headers (default 10s)"`
	// WebhookBudget bounds a webhook delivery with its retries; default 60 s.
	WebhookBudget time.Duration `yaml:"webhook_budget" doc:"a webhook delivery with its retries (exponential backoff with full jitter, Retry-After honoured) (default 60s)"`
	// WebhookRetryBase caps the first retry's backoff; default 500 ms.
	WebhookRetryBase time.Duration `yaml:"webhook_retry_base" doc:"cap of the first webhook retry's backoff, doubled at each retry (default 500ms)"`
	// WebhookWorkers is how many deliveries run at once; default 8.
	WebhookWorkers int `yaml:"webhook_workers" doc:"webhook deliveries made at once (default 8)"`
	// WebhookQueue bounds the deliveries waiting for a worker; default 1024.
	WebhookQueue int `yaml:"webhook_queue" doc:"webhook deliveries that may wait for a worker; over it a delivery fails at once (default 1024)"`
	// BreakerThreshold is how many failed attempts in a row open an app's
	// circuit breaker; default 5.
	BreakerThreshold int `yaml:"breaker_threshold" doc:"failed webhook attempts in a row that open an app's circuit breaker; while open its webhooks fail at once (default 5)"`
	// BreakerOpen is the breaker's first open period; default 10 s.
	BreakerOpen time.Duration `yaml:"breaker_open" doc:"first open period of an app's circuit breaker, doubled at each failed probe up to 5m (default 10s)"`
	// TicketTTL is the life of a start ticket; default 60 s.
	TicketTTL time.Duration `yaml:"ticket_ttl" doc:"life of the single-use start ticket of an app session (default 60s)"`
	// ConnectTimeout is how long an app has, once its session.start webhook
	// was accepted, to connect; default 30 s.
	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"how long an app has to connect once session.start was accepted; then the start fails at stage timeout (default 30s)"`
	// PublicURL is the WebSocket URL given to apps in session.start;
	// default ws://<listen address>/ws.
	PublicURL string `yaml:"public_url" doc:"WebSocket URL that session.start gives apps to connect to (default ws://<addr>/ws)"`

	// Recovery (recovery.go).
	// Grace is how long a running session whose app connection dropped
	// waits in transport_down for the app to resume; default 30 s.
	Grace time.Duration `yaml:"grace" doc:"how long an app session whose app connection dropped waits (transport_down) for the app to resume with its token before it is resurrected (default 30s)"`
	// ResurrectionBudget bounds the resurrection attempts of a session;
	// default 5 min.
	ResurrectionBudget time.Duration `yaml:"resurrection_budget" doc:"how long a session is resurrected (session.start with resumed: true at 0, 2, 5, 10, 20, 40, 60 s, then every minute) before it stops with app_error (default 5m)"`
	// DormantLimit is how long a dormant session waits for its device;
	// default 24 h.
	DormantLimit time.Duration `yaml:"dormant_limit" doc:"how long a dormant app session (app and device both gone) waits for the device before it stops with device_gone (default 24h)"`
	// RecoveryInterval is how often the recovery loop checks the due
	// timers in the store; default 1 s.
	RecoveryInterval time.Duration `yaml:"recovery_interval" doc:"how often each node checks the app sessions' due recovery timers (grace, resurrection, dormancy, connect deadlines) in the database (default 1s)"`
	// StreamHistory is how many discrete events of a device stream are kept
	// for the sessions whose connection is down; default 64.
	StreamHistory int `yaml:"stream_history" doc:"discrete events kept per device stream for app sessions that resume; older ones are announced as stream.gap (default 64)"`
	// StreamQueueFrames bounds the media frames waiting per subscription;
	// default 64.
	StreamQueueFrames int `yaml:"stream_queue_frames" doc:"media frames waiting per app subscription; over it the oldest is dropped and stream.gap follows (default 64)"`
	// StreamInflightFrames is how many frames an app's socket queue may hold
	// before media frames wait in their subscription's queue; default 16.
	StreamInflightFrames int `yaml:"stream_inflight_frames" doc:"frames an app connection's socket queue may hold before media frames wait (and may be dropped) in their subscription's queue (default 16)"`
	// ToolTimeout bounds a tool call, over the socket or the webhook;
	// default 10 s.
	ToolTimeout time.Duration `yaml:"tool_timeout" doc:"how long a tool.call waits for the app's answer, over its session socket or its webhook (default 10s)"`
	// ToolRate and ToolBurst limit the tool calls to one app, across all
	// callers; default 20 a second, bursts of 40.
	ToolRate  float64 `yaml:"tool_rate" doc:"tool calls a second to one app, across all callers (default 20)"`
	ToolBurst int     `yaml:"tool_burst" doc:"burst of tool calls to one app (default 40)"`
	// OutputLease is the output arbiter's background lease; default 10 s.
	OutputLease time.Duration `yaml:"output_lease" doc:"how long an app whose background output was last shown on a surface keeps other apps' background outputs off it once idle (default 10s)"`
}

func (c *Config) setDefaults() {
	if c.LastUseInterval <= 0 {
		c.LastUseInterval = time.Minute
	}
	if c.RotationOverlap <= 0 {
		c.RotationOverlap = 24 * time.Hour
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.WebhookTimeout, 10*time.Second)
	def(&c.WebhookBudget, 60*time.Second)
	def(&c.WebhookRetryBase, 500*time.Millisecond)
	def(&c.BreakerOpen, 10*time.Second)
	def(&c.TicketTTL, 60*time.Second)
	def(&c.ConnectTimeout, 30*time.Second)
	def(&c.Grace, 30*time.Second)
	def(&c.ResurrectionBudget, 5*time.Minute)
	def(&c.DormantLimit, 24*time.Hour)
	def(&c.RecoveryInterval, time.Second)
	def(&c.ToolTimeout, 10*time.Second)
	if c.ToolRate <= 0 {
		c.ToolRate = 20
	}
	if c.ToolBurst <= 0 {
		c.ToolBurst = 40
	}
	if c.WebhookWorkers <= 0 {
		c.WebhookWorkers = 8
	}
	if c.WebhookQueue <= 0 {
		c.WebhookQueue = 1024
	}
	if c.BreakerThreshold <= 0 {
		c.BreakerThreshold = 5
	}
	if c.StreamHistory <= 0 {
		c.StreamHistory = 64
	}
	if c.StreamQueueFrames <= 0 {
		c.StreamQueueFrames = 64
	}
	if c.StreamInflightFrames <= 0 {
		c.StreamInflightFrames = 16
	}
}

// policy is the delivery policy of every app's webhooks: breakers fail
// fast, so that a start on a dead app server fails at once at stage
// webhook instead of waiting.
func (c *Config) policy() delivery.Policy {
	return delivery.Policy{Timeout: c.WebhookTimeout, Budget: c.WebhookBudget, BaseDelay: c.WebhookRetryBase,
		BreakerThreshold: c.BreakerThreshold, BreakerOpen: c.BreakerOpen, WhenOpen: delivery.OpenFailFast}
}

// Deps are the platform's collaborators.
type Deps struct {
	Store *store.DB
	// Hub closes or reauthorizes live connections when permissions change.
	Hub *hub.Hub
	// Account supplies the op machinery (account.Define).
	Account *account.Service
	// Pepper keys the MACs of API keys (auth.APIKeyMAC); the same as the
	// Authenticator's.
	Pepper []byte
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SealKey (32 bytes) encrypts webhook secrets at rest
	// (auth.LoadOrCreateWebhookKey); without it apps get no webhook secret
	// and sessions cannot start.
	SealKey []byte
	// Registerer receives the webhook metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Solo says this node is the only one (no cluster broker): when it
	// starts it claims every app session, not only those it owned.
	Solo bool
}

// Service is the apps platform. Build it with New; Start launches its one
// goroutine (the last-use writer), owned by the hub.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	ops  []account.Op // the op table, set once in New

	mu   sync.Mutex
	used map[string]time.Time // guarded by mu: key id → last use not yet written; bounded by the number of keys

	deliv *delivery.Deliverer // set once in New
	dlog  *delivery.MemoryLog // set once in New: the last attempts per app
	jobs  chan webhookJob     // set once in New: bounded by Config.WebhookQueue, drained by Run
	live  liveSessions        // this node's app sessions waiting or connected
	rec   recovery            // resurrection bookkeeping per app (recovery.go)

	streams *streamRouter // set once in New: device streams (streams.go)
	outs    *outputs      // set once in New: the output arbiter's device executors (outputs.go)

	schemas schemaCache // compiled settings and tool schemas (schemas.go)
	tools   toolLimits  // per-app rate limits of tool calls (tools.go)
}

var (
	_ auth.APIKeyStore   = (*Service)(nil)
	_ auth.Installations = (*Service)(nil)
)

// New builds the platform and its op table.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Hub == nil || deps.Account == nil {
		return nil, errors.New("apps: store, hub and account are required")
	}
	if len(deps.Pepper) < auth.MinPepperBytes {
		return nil, errors.New("apps: a pepper of at least 32 bytes is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	cfg.setDefaults()
	s := &Service{cfg: cfg, deps: deps, log: deps.Logger, used: map[string]time.Time{},
		dlog: &delivery.MemoryLog{}, jobs: make(chan webhookJob, cfg.WebhookQueue)}
	s.live.m = map[string]*liveSession{}
	// The deliverer's clock is the service's, so that the breaker's open
	// period and the recovery schedule run on one time.
	s.deliv = delivery.New(delivery.Config{Purpose: "webhook", Registerer: deps.Registerer, Log: s.dlog, Clock: serviceClock{deps.Now}})
	s.rec.init(deps.Registerer)
	s.streams = newStreamRouter(cfg, deps.Hub, deps.Logger, deps.Now, deps.Registerer)
	s.ops = append(s.ops, s.adminOps()...)
	s.ops = append(s.ops, s.installOps()...)
	s.ops = append(s.ops, s.webhookOps()...)
	s.ops = append(s.ops, s.sessionOps()...)
	s.ops = append(s.ops, s.settingsOps()...)
	s.ops = append(s.ops, s.toolOps()...)
	s.ops = append(s.ops, s.adminViewOps()...)
	s.outs = newOutputs(s)
	return s, nil
}

// Ops returns the op table. Callers must not modify it.
func (s *Service) Ops() []account.Op { return s.ops }

// FeatureApps is the welcome feature announcing the apps methods.
const FeatureApps = "apps"

// Register adds the WebSocket methods of the op table to h's method table
// and announces FeatureApps. Call before h starts.
func (s *Service) Register(h *hub.Hub) {
	for i := range s.ops {
		o := &s.ops[i]
		if !o.WS {
			continue
		}
		h.Register(hub.Method{Name: o.Name, Scope: o.Scope, Mode: hub.Serial,
			Params: reflect.TypeOf(o.Params), Result: reflect.TypeOf(o.Result),
			Handler: func(ctx context.Context, call *hub.Call) (any, error) {
				return o.Exec(context.WithValue(ctx, callKey{}, call), call.Principal, call.Params, call.Idem)
			}})
	}
	s.outs.register(h)
	h.AddFeature(FeatureApps)
	s.registerStreams(h)
}

// Start launches the last-use writer on a goroutine the hub owns: it
// writes every LastUseInterval and once more when the hub closes.
func (s *Service) Start() {
	s.startRecovery()
	s.deps.Hub.Go(s.streams.pump)
	s.deps.Hub.Go(func(ctx context.Context) {
		t := time.NewTicker(s.cfg.LastUseInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				s.FlushLastUse(fctx)
				cancel()
				return
			case <-t.C:
				s.FlushLastUse(ctx)
			}
		}
	})
}

// FlushLastUse writes the last use of the keys used since the previous
// write, in one transaction. On failure the times are kept for the next.
func (s *Service) FlushLastUse(ctx context.Context) {
	s.mu.Lock()
	used := s.used
	if len(used) == 0 {
		s.mu.Unlock()
		return
	}
	s.used = map[string]time.Time{}
	s.mu.Unlock()
	if err := s.deps.Store.TouchAppKeys(ctx, used); err != nil {
		s.log.Warn("apps: write the last use of api keys", "keys", len(used), "err", err)
		s.mu.Lock()
		for id, at := range used {
			if at.After(s.used[id]) {
				s.used[id] = at
			}
		}
		s.mu.Unlock()
	}
}

// LookupAPIKey implements auth.APIKeyStore: the key's MAC and the app's
// principal (its scopes, the key's expiry).
func (s *Service) LookupAPIKey(ctx context.Context, id string) ([]byte, *auth.Principal, error) {
	k, a, err := s.deps.Store.AppKeyWithApp(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil, auth.ErrUnknownAPIKey
	case err != nil:
		return nil, nil, err
	case !k.RevokedAt.IsZero():
		return nil, nil, auth.ErrRevoked
	}
	return k.MAC, &auth.Principal{AppID: a.ID, TokenID: k.ID, Scopes: a.Scopes, ExpiresAtMicros: auth.ExpiryMicros(k.ExpiresAt)}, nil
}

// APIKeyUsed implements auth.APIKeyStore: the time is kept in memory and
// written by the last-use writer.
func (s *Service) APIKeyUsed(id string, at time.Time) {
	s.mu.Lock()
	if at.After(s.used[id]) {
		s.used[id] = at
	}
	s.mu.Unlock()
}

// InstalledScopes implements auth.Installations.
func (s *Service) InstalledScopes(ctx context.Context, appID, userID string) ([]string, error) {
	in, err := s.deps.Store.Install(ctx, appID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, auth.ErrNotInstalled
	}
	if err != nil {
		return nil, err
	}
	return in.Scopes, nil
}
