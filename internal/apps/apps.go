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

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
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
}

func (c *Config) setDefaults() {
	if c.LastUseInterval <= 0 {
		c.LastUseInterval = time.Minute
	}
	if c.RotationOverlap <= 0 {
		c.RotationOverlap = 24 * time.Hour
	}
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
	s := &Service{cfg: cfg, deps: deps, log: deps.Logger, used: map[string]time.Time{}}
	s.ops = append(s.ops, s.adminOps()...)
	s.ops = append(s.ops, s.installOps()...)
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
				return o.Exec(ctx, call.Principal, call.Params, call.Idem)
			}})
	}
	h.AddFeature(FeatureApps)
}

// Start launches the last-use writer on a goroutine the hub owns: it
// writes every LastUseInterval and once more when the hub closes.
func (s *Service) Start() {
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
	return k.MAC, &auth.Principal{AppID: a.ID, TokenID: k.ID, Scopes: a.Scopes, ExpiresAt: k.ExpiresAt}, nil
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
