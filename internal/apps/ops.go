package apps

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// The op table: the admin API (apps and their keys, scope admin) and the
// users' installations.

var (
	appPath   = map[string]string{"id": "id"}
	pageQuery = []account.QueryParam{
		{Name: "after", Member: "after", Type: "string", Desc: "next of the previous page"},
		{Name: "limit", Member: "limit", Type: "integer", Desc: "page size, 1..100 (default 50)", Min: 1, Max: store.MaxPageLimit},
	}
)

func (s *Service) adminOps() []account.Op {
	a := s.deps.Account
	return []account.Op{
		// Not idempotent on purpose (like apps.rotateKey): a replay would
		// have to keep the new key's secret in clear. A retry of a create
		// that went through answers conflict.
		account.Define(a, account.Op{Name: "apps.create", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "POST", Path: "/api/v1/admin/apps", Status: http.StatusCreated, OperationID: "createApp",
				Summary: "Register an app; the answer carries its first API key, shown only this once", Tag: "Apps", Body: "AppCreate", Result: "AppCreated"}},
		}, protocol.AppCreated{}, checkCreate, s.create),
		account.Define(a, account.Op{Name: "apps.list", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/admin/apps", Status: http.StatusOK, OperationID: "listApps",
				Summary: "The registered apps, in id order", Tag: "Apps", Result: "AppList", Query: pageQuery}},
		}, protocol.AppList{}, checkAppPage, s.list),
		account.Define(a, account.Op{Name: "apps.get", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/admin/apps/{id}", Status: http.StatusOK, OperationID: "getApp",
				Summary: "One app", Tag: "Apps", Result: "App", PathParams: appPath}},
		}, protocol.App{}, checkAppID, func(ctx context.Context, _ *auth.Principal, p *protocol.AppIDParams) (any, error) {
			app, err := s.deps.Store.App(ctx, p.ID)
			if err != nil {
				return nil, err
			}
			return wireApp(app), nil
		}),
		account.Define(a, account.Op{Name: "apps.delete", Scope: auth.ScopeAdmin, WS: true, Mutating: true,
			Routes: []account.Route{{Method: "DELETE", Path: "/api/v1/admin/apps/{id}", Status: http.StatusOK, OperationID: "deleteApp",
				Summary: "Delete an app with its keys and installations; its connections are closed (4003)", Tag: "Apps", Result: "AppDeleted", PathParams: appPath}},
		}, protocol.AppDeleted{}, checkAppID, s.delete),
		account.Define(a, account.Op{Name: "apps.keys", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/admin/apps/{id}/keys", Status: http.StatusOK, OperationID: "listAppKeys",
				Summary: "An app's API keys (never their secrets), oldest first", Tag: "Apps", Result: "AppKeyList", PathParams: appPath}},
		}, protocol.AppKeyList{}, checkAppID, s.keys),
		account.Define(a, account.Op{Name: "apps.rotateKey", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "POST", Path: "/api/v1/admin/apps/{id}/keys", Status: http.StatusCreated, OperationID: "rotateAppKey",
				Summary: "Add an API key (shown only this once); the app's other keys expire after the overlap", Tag: "Apps",
				Body: "AppKeyRotate", BodyOptional: true, Result: "AppKeySecret", PathParams: appPath}},
		}, protocol.AppKeySecret{}, checkRotate, s.rotateKey),
		account.Define(a, account.Op{Name: "apps.revokeKey", Scope: auth.ScopeAdmin, WS: true, Mutating: true,
			Routes: []account.Route{{Method: "DELETE", Path: "/api/v1/admin/apps/{id}/keys/{keyId}", Status: http.StatusOK, OperationID: "revokeAppKey",
				Summary: "Revoke an API key at once; connections authenticated with it are closed (4003)", Tag: "Apps", Result: "AppKey",
				PathParams: map[string]string{"id": "id", "keyId": "keyId"}}},
		}, protocol.AppKey{}, checkRevoke, s.revokeKey),
	}
}

func (s *Service) installOps() []account.Op {
	a := s.deps.Account
	return []account.Op{
		// Scope write: installing is a change, and a user grants only
		// scopes their own credential holds.
		account.Define(a, account.Op{Name: "apps.install", Scope: auth.ScopeWrite, WS: true, Mutating: true, NoApps: true,
			Routes: []account.Route{{Method: "PUT", Path: "/api/v1/apps/{appId}/install", Status: http.StatusOK, OperationID: "installApp",
				Summary: "Install an app for the caller granting scopes, or change the scopes granted (narrowing applies at once to the app's connections)", Tag: "Apps",
				Body: "AppInstallRequest", BodyOptional: true, Result: "AppInstalled", PathParams: map[string]string{"appId": "appId"}}},
		}, protocol.AppInstalled{}, checkInstall, s.install),
		account.Define(a, account.Op{Name: "apps.uninstall", Scope: hub.ScopeAuthenticated, WS: true, Mutating: true, NoApps: true,
			Routes: []account.Route{{Method: "DELETE", Path: "/api/v1/apps/{appId}/install", Status: http.StatusOK, OperationID: "uninstallApp",
				Summary: "Uninstall an app for the caller: its connections acting for the caller are closed (4003) at once", Tag: "Apps",
				Result: "AppUninstalled", PathParams: map[string]string{"appId": "appId"}}},
		}, protocol.AppUninstalled{}, checkUninstall, s.uninstall),
		account.Define(a, account.Op{Name: "apps.installs", Scope: hub.ScopeAuthenticated, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/apps/installs", Status: http.StatusOK, OperationID: "listInstalls",
				Summary: "The caller's installed apps; with an app's own key, the users who installed it", Tag: "Apps", Result: "AppInstallList", Query: pageQuery}},
		}, protocol.AppInstallList{}, checkInstallPage, s.installs),
	}
}

func (s *Service) create(ctx context.Context, pr *auth.Principal, p *protocol.AppCreateParams) (any, error) {
	app := appFromParams(p)
	if app.Owner == "" {
		app.Owner = pr.UserID
	}
	key, id, mac, err := auth.NewAPIKey(s.deps.Pepper)
	if err != nil {
		return nil, err
	}
	var expires time.Time
	if p.KeyTTLMs > 0 {
		expires = s.deps.Now().Add(time.Duration(p.KeyTTLMs) * time.Millisecond)
	}
	created, k, err := s.deps.Store.CreateApp(ctx, app, store.AppKey{ID: id, MAC: mac, ExpiresAt: expires})
	if errors.Is(err, store.ErrDuplicate) {
		return nil, protocol.Errorf(protocol.CodeConflict, "an app with id %q already exists", p.ID)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("app registered", "app", created.ID, "key", id, "internal", p.Internal, "by", pr.UserID)
	out := protocol.AppCreated{App: wireApp(created), Key: protocol.AppKeySecret{Key: key, AppKey: s.wireKey(k)}}
	if len(s.deps.SealKey) > 0 {
		// Not in the app's transaction: an app left without a secret gets
		// one by rotation (its webhooks fail until then, at stage webhook).
		sec, err := s.newWebhookSecret(ctx, created.ID, time.Time{}, &p.Internal)
		if err != nil {
			s.log.Error("apps: create the webhook secret of a new app; rotate one", "app", created.ID, "err", err)
		} else {
			out.WebhookSecret = &sec
		}
	}
	return out, nil
}

func (s *Service) list(ctx context.Context, _ *auth.Principal, p *protocol.AppListParams) (any, error) {
	apps, more, err := s.deps.Store.Apps(ctx, p.After, p.Limit)
	if err != nil {
		return nil, err
	}
	out := protocol.AppList{Apps: []protocol.App{}}
	for _, a := range apps {
		out.Apps = append(out.Apps, wireApp(a))
	}
	if more {
		out.Next = apps[len(apps)-1].ID
	}
	return out, nil
}

func (s *Service) delete(ctx context.Context, pr *auth.Principal, p *protocol.AppIDParams) (any, error) {
	users, err := s.deps.Store.DeleteApp(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	// Every connection of the app: its own and those acting for users.
	s.disconnectEverywhere(ctx, hub.DisconnectMatch{AppID: p.ID})
	s.log.Info("app deleted", "app", p.ID, "installs", len(users), "by", pr.UserID)
	return protocol.AppDeleted{Deleted: true, Uninstalled: len(users)}, nil
}

func (s *Service) keys(ctx context.Context, _ *auth.Principal, p *protocol.AppIDParams) (any, error) {
	if _, err := s.deps.Store.App(ctx, p.ID); err != nil {
		return nil, err
	}
	ks, err := s.deps.Store.AppKeys(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	out := protocol.AppKeyList{Keys: []protocol.AppKey{}}
	for _, k := range ks {
		out.Keys = append(out.Keys, s.wireKey(k))
	}
	return out, nil
}

func (s *Service) rotateKey(ctx context.Context, pr *auth.Principal, p *protocol.AppKeyRotateParams) (any, error) {
	now := s.deps.Now()
	overlap := s.cfg.RotationOverlap
	if p.OverlapMs != nil {
		overlap = time.Duration(*p.OverlapMs) * time.Millisecond
	}
	until := now.Add(overlap)
	key, id, mac, err := auth.NewAPIKey(s.deps.Pepper)
	if err != nil {
		return nil, err
	}
	var expires time.Time
	if p.TTLMs > 0 {
		expires = now.Add(time.Duration(p.TTLMs) * time.Millisecond)
	}
	k, err := s.deps.Store.AddAppKey(ctx, store.AppKey{ID: id, AppID: p.ID, MAC: mac, ExpiresAt: expires}, until)
	if err != nil {
		return nil, err
	}
	// Live connections authenticated with the app's other keys now end with
	// the overlap: their principals carry the new expiry, watched by the
	// hub (token.expiring, then 4001).
	ks, err := s.deps.Store.AppKeys(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	expiry := map[string]time.Time{}
	for _, old := range ks {
		if old.ID != id {
			expiry[old.ID] = old.ExpiresAt
		}
	}
	// DisconnectWhere is the hub's walk over every connection; match only
	// collects (it never closes), and the principals change outside it.
	var conns []*hub.Conn
	s.deps.Hub.DisconnectWhere(protocol.DisconnectForbidden, func(c *hub.Conn) bool {
		cp := c.Principal()
		if exp, ok := expiry[cp.TokenID]; ok && cp.AppID == p.ID && !exp.IsZero() && !exp.Equal(cp.ExpiresAt()) {
			conns = append(conns, c)
		}
		return false
	})
	for _, c := range conns {
		err := s.deps.Hub.Amend(ctx, c, func(np auth.Principal) auth.Principal {
			np.ExpiresAtMicros = auth.ExpiryMicros(expiry[np.TokenID])
			return np
		})
		if err != nil {
			s.log.Warn("apps: reauthorize after rotation; closing", "app", p.ID, "conn", c.ID(), "err", err)
			c.Disconnect(protocol.DisconnectForbidden)
		}
	}
	s.log.Info("app key added", "app", p.ID, "key", id, "overlap", overlap, "by", pr.UserID)
	return protocol.AppKeySecret{Key: key, AppKey: s.wireKey(k)}, nil
}

func (s *Service) revokeKey(ctx context.Context, pr *auth.Principal, p *protocol.AppKeyRevokeParams) (any, error) {
	k, err := s.deps.Store.RevokeAppKey(ctx, p.ID, p.KeyID)
	if err != nil {
		return nil, err
	}
	n := s.disconnectEverywhere(ctx, hub.DisconnectMatch{AppID: p.ID, TokenID: p.KeyID})
	s.log.Info("app key revoked", "app", p.ID, "key", p.KeyID, "closed", n, "by", pr.UserID)
	return s.wireKey(k), nil
}

func (s *Service) install(ctx context.Context, pr *auth.Principal, p *protocol.AppInstallParams) (any, error) {
	if pr.UserID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only a user's credential may install an app")
	}
	app, err := s.deps.Store.App(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	granted := []string{}
	for _, sc := range p.Scopes {
		if slices.Contains(granted, sc) {
			continue
		}
		if !slices.Contains(app.Scopes, sc) {
			return nil, protocol.FieldError("scopes", "%q is not a scope the app asks for (%v)", sc, app.Scopes)
		}
		// A device stream scope is consent to the user's own device's data:
		// the user grants it without holding it.
		if !pr.HasScope(sc) && !strings.HasPrefix(sc, StreamScopePrefix) {
			return nil, protocol.Errorf(protocol.CodeForbidden, "cannot grant scope %q: the caller does not hold it", sc)
		}
		granted = append(granted, sc)
	}
	in, created, err := s.deps.Store.PutInstall(ctx, app.ID, pr.UserID, granted)
	if err != nil {
		return nil, err
	}
	if !created {
		s.narrow(ctx, app.ID, pr.UserID, granted)
	}
	return protocol.AppInstalled{Install: wireInstall(in), Created: created}, nil
}

// narrow applies a new grant to the app's live connections acting for the
// user: each keeps only the scopes it had that the grant still lists (a
// widened grant applies to new connections), and its subscriptions are
// rechecked. A connection that cannot be rechecked is closed (fail closed).
func (s *Service) narrow(ctx context.Context, appID, userID string, granted []string) {
	var conns []*hub.Conn
	s.deps.Hub.ConnsOfUser(userID, func(c *hub.Conn) {
		if c.Principal().AppID == appID {
			conns = append(conns, c)
		}
	})
	for _, c := range conns {
		err := s.deps.Hub.Amend(ctx, c, func(np auth.Principal) auth.Principal {
			np.Scopes = auth.IntersectScopes(np.Scopes, granted)
			return np
		})
		if err != nil {
			s.log.Warn("apps: reauthorize after a grant changed; closing", "app", appID, "conn", c.ID(), "err", err)
			c.Disconnect(protocol.DisconnectForbidden)
			continue
		}
		s.streams.recheck(c)
		s.outs.narrowed(ctx, c, c.Principal())
	}
}

func (s *Service) uninstall(ctx context.Context, pr *auth.Principal, p *protocol.AppUninstallParams) (any, error) {
	if pr.UserID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only a user's credential may uninstall an app")
	}
	if err := s.deps.Store.DeleteInstall(ctx, p.AppID, pr.UserID); err != nil {
		return nil, err
	}
	// The user's sessions of the app stop first (app.stopped, close 1000,
	// session.stop); then any other connection of the app for the user
	// closes with 4003, on every node.
	s.stopUserSessions(ctx, p.AppID, pr.UserID, protocol.StopPermissionRevoked)
	if err := s.deps.Store.DeleteAppSettings(ctx, p.AppID, pr.UserID); err != nil {
		s.log.Warn("apps: forget the settings of an uninstalled app", "app", p.AppID, "err", err)
	}
	n := s.disconnectEverywhere(ctx, hub.DisconnectMatch{UserID: pr.UserID, AppID: p.AppID})
	return protocol.AppUninstalled{Uninstalled: true, Disconnected: n}, nil
}

func (s *Service) installs(ctx context.Context, pr *auth.Principal, p *protocol.AppInstallListParams) (any, error) {
	var ins []store.Install
	var more bool
	var err error
	switch {
	case pr.AppID != "" && pr.UserID == "":
		ins, more, err = s.deps.Store.InstallsOfApp(ctx, pr.AppID, p.After, p.Limit)
	case pr.AppID != "":
		// An app acting for a user sees only its own installation.
		var in store.Install
		in, err = s.deps.Store.Install(ctx, pr.AppID, pr.UserID)
		if err == nil && p.After < pr.AppID {
			ins = []store.Install{in}
		}
	case pr.UserID != "":
		ins, more, err = s.deps.Store.InstallsOfUser(ctx, pr.UserID, p.After, p.Limit)
	default:
		return nil, protocol.Errorf(protocol.CodeForbidden, "no user or app to list installations of")
	}
	if err != nil {
		return nil, err
	}
	out := protocol.AppInstallList{Installs: []protocol.AppInstall{}}
	for _, in := range ins {
		out.Installs = append(out.Installs, wireInstall(in))
	}
	if more {
		last := ins[len(ins)-1]
		out.Next = last.AppID
		if pr.AppID != "" {
			out.Next = last.UserID
		}
	}
	return out, nil
}

// disconnectEverywhere closes with 4003 the connections m selects, on this
// node at once and on every other node of a cluster as the hub's event
// reaches it; it returns how many it closed here.
func (s *Service) disconnectEverywhere(ctx context.Context, m hub.DisconnectMatch) int {
	n, err := s.deps.Hub.DisconnectEverywhere(context.WithoutCancel(ctx), m, protocol.DisconnectForbidden)
	if err != nil {
		s.log.Warn("apps: other nodes not told to disconnect", "match", m, "err", err)
	}
	return n
}
