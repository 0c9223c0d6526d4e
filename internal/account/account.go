// Package account is the account/data application: key login, refresh and
// logout, devices and pairing, the end-to-end encrypted data (sessions,
// messages, machines, artifacts) and the account's update log, with their
// idempotency, the publication of updates on user:{userId} and the mapping
// of store errors to protocol errors.
//
// Its operations are defined once, in the op table (Service.Ops). The HTTP
// edge (web) mounts them as REST routes; Register adds the data operations
// to the hub's method table as WebSocket methods, and registers the
// store-backed owner lookups and the "session" snapshot provider of the
// channel namespaces. The package imports hub, auth, store and protocol,
// never web: a data write goes ws → hub → account → store, and its update
// account → hub.
package account

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
)

// Config configures key login, refresh and pairing. The zero value of every
// field selects its default.
type Config struct {
	// AccessTTL is the lifetime of access tokens issued at login, refresh
	// and pairing; default 1 h.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of refresh tokens; default 30 days.
	RefreshTTL time.Duration
	// Challenges bounds the login nonces (their TTL, default 5 min, and the
	// per-client-address rate and outstanding limits).
	Challenges auth.ChallengeConfig
	// PairingTTL is how long a pairing code is valid; default 5 min.
	PairingTTL time.Duration
	// Voice configures voice tokens (off unless configured).
	Voice VoiceConfig
}

func (c *Config) setDefaults() {
	if c.AccessTTL <= 0 {
		c.AccessTTL = time.Hour
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.PairingTTL <= 0 {
		c.PairingTTL = 5 * time.Minute
	}
	c.Voice.setDefaults()
}

// Deps are the application's collaborators.
type Deps struct {
	Store *store.DB
	// Hub publishes updates and closes revoked devices' connections.
	Hub *hub.Hub
	// Tokens issues access tokens.
	Tokens *auth.Tokens
	Logger *slog.Logger
	// Now is the clock of voice tokens; default time.Now.
	Now func() time.Time
	// Nonces, when set, shares the login nonces between nodes (a
	// cluster's Redis): a challenge may be answered on any node, once.
	Nonces auth.SharedNonces
}

// Service is the account application. Build it with New; it holds no
// goroutines.
type Service struct {
	cfg        Config
	deps       Deps
	log        *slog.Logger
	challenges *auth.Challenges // set once in New
	ops        []Op             // the op table, set once in New
}

// New builds the application and its op table.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Hub == nil || deps.Tokens == nil {
		return nil, errors.New("account: store, hub and tokens are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.setDefaults()
	if err := cfg.Voice.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, deps: deps, log: deps.Logger}
	s.challenges = auth.NewChallenges(cfg.Challenges)
	if deps.Nonces != nil {
		s.challenges.Share(deps.Nonces)
	}
	s.ops = append(s.ops, s.authOps()...)
	s.ops = append(s.ops, s.deviceOps()...)
	s.ops = append(s.ops, s.dataOps()...)
	s.ops = append(s.ops, s.updateOps()...)
	s.ops = append(s.ops, s.voiceOps()...)
	s.ops = append(s.ops, s.adminOps()...)
	return s, nil
}

func (s *Service) now() time.Time {
	if s.deps.Now != nil {
		return s.deps.Now()
	}
	return time.Now()
}

// Ops returns the op table. Callers must not modify it.
func (s *Service) Ops() []Op { return s.ops }

// FeatureData is the welcome feature announcing the data methods.
const FeatureData = "data"

// Register adds the WebSocket methods of the op table to h's method table,
// the owner lookups "device", "session", "machine" and "artifact" and the
// snapshot provider "session" (see owners.go), and announces FeatureData.
// Call before h starts.
func (s *Service) Register(h *hub.Hub) {
	for i := range s.ops {
		o := &s.ops[i]
		if !o.WS {
			continue
		}
		// Mode Serial: a connection's data writes apply in the order sent.
		// Idempotency is Exec's (store records that survive restarts),
		// not the hub's in-memory cache.
		// Params and Result are the protocol types, for the contract (the
		// AsyncAPI document).
		h.Register(hub.Method{Name: o.Name, Scope: o.Scope, Mode: hub.Serial,
			Params: reflect.TypeOf(o.Params), Result: reflect.TypeOf(o.Result),
			Handler: func(ctx context.Context, call *hub.Call) (any, error) {
				return o.Exec(ctx, call.Principal, call.Params, call.Idem)
			}})
	}
	s.registerOwners(h)
	h.AddFeature(FeatureData)
}

// baseURLKey carries the request's base URL (scheme://host) in the context
// of a REST operation, for links such as the pairing URI.
type baseURLKey struct{}

// clientKey carries the auth.ClientKey of the client address of a REST
// operation (web computes the address, trusted proxies considered).
type clientKey struct{}

// WithClientAddr returns ctx carrying the client address a from which a
// REST operation was asked, as the HTTP edge determined it (trusted
// proxies' X-Forwarded-For considered). The login challenge is limited per
// client address.
func WithClientAddr(ctx context.Context, a netip.Addr) context.Context {
	return context.WithValue(ctx, clientKey{}, auth.ClientKey(a))
}

// WithBaseURL returns ctx carrying the base URL (scheme://host) under which
// the client reached the server, used in links the operations return.
func WithBaseURL(ctx context.Context, base string) context.Context {
	return context.WithValue(ctx, baseURLKey{}, base)
}
