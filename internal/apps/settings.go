package apps

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Settings (docs/apps.md, "Settings"): a user's settings of an app are a
// JSON object validated against the app's settings schema, with a version
// that grows by one at each write. The user writes them with the version
// last seen (compare-and-set: a stale version is a conflict carrying the
// current one). A write is pushed as settings.changed to each of the
// user's sessions of the app connected to this node; when none is, it goes
// to the app's backend as a signed settings.changed webhook. apps.hello
// carries the values and version.

// maxSettingsBytes bounds a user's settings values.
const maxSettingsBytes = 64 << 10

func (s *Service) settingsOps() []account.Op {
	a := s.deps.Account
	path := map[string]string{"appId": "appId"}
	return []account.Op{
		account.Define(a, account.Op{Name: "apps.settings", Scope: hub.ScopeAuthenticated, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/apps/{appId}/settings", Status: http.StatusOK, OperationID: "getAppSettings",
				Summary: "The caller's settings of an app with their version and the app's schema (the user, or the app acting for the user)", Tag: "Apps",
				Result: "AppSettings", PathParams: path}},
		}, protocol.AppSettings{}, func(p *protocol.AppSettingsParams) error { return checkID("appId", p.AppID) }, s.getSettings),
		account.Define(a, account.Op{Name: "apps.setSettings", Scope: auth.ScopeWrite, WS: true, Mutating: true, NoApps: true,
			Routes: []account.Route{{Method: "PUT", Path: "/api/v1/apps/{appId}/settings", Status: http.StatusOK, OperationID: "setAppSettings",
				Summary: "Write the caller's settings of an installed app, validated against its schema, if their version is still the one given (else conflict); the app is told (settings.changed)", Tag: "Apps",
				Body: "AppSettingsRequest", Result: "AppSettings", PathParams: path}},
		}, protocol.AppSettings{}, checkSetSettings, s.setSettings),
	}
}

func checkSetSettings(p *protocol.AppSettingsPutParams) error {
	if err := checkID("appId", p.AppID); err != nil {
		return err
	}
	if !isObject(p.Values) {
		return protocol.FieldError("values", "want a JSON object")
	}
	if len(p.Values) > maxSettingsBytes {
		return protocol.FieldError("values", "over %d bytes", maxSettingsBytes)
	}
	if p.Version < 0 {
		return protocol.FieldError("version", "want the version last read, 0 for none")
	}
	return nil
}

// settingsOf returns a user's settings of an app: values nil and version 0
// when none were written.
func (s *Service) settingsOf(ctx context.Context, appID, userID string) (json.RawMessage, int64, error) {
	st, err := s.deps.Store.AppSettingsOf(ctx, appID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return st.Values, st.Version, nil
}

// settingsUser is the user whose settings of appID pr may read: a user's
// own credential, or the app's key acting for a user.
func settingsUser(pr *auth.Principal, appID string) (string, error) {
	if pr.UserID == "" || (pr.AppID != "" && pr.AppID != appID) {
		return "", protocol.Errorf(protocol.CodeForbidden, "only the user, or the app acting for the user, may read the user's settings of an app")
	}
	return pr.UserID, nil
}

func (s *Service) getSettings(ctx context.Context, pr *auth.Principal, p *protocol.AppSettingsParams) (any, error) {
	user, err := settingsUser(pr, p.AppID)
	if err != nil {
		return nil, err
	}
	app, err := s.deps.Store.App(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	vals, ver, err := s.settingsOf(ctx, app.ID, user)
	if err != nil {
		return nil, err
	}
	return protocol.AppSettings{Schema: app.SettingsSchema, Values: vals, Version: ver}, nil
}

func (s *Service) setSettings(ctx context.Context, pr *auth.Principal, p *protocol.AppSettingsPutParams) (any, error) {
	if pr.UserID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only a user's credential may write the user's settings")
	}
	app, err := s.deps.Store.App(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	if _, err := s.deps.Store.Install(ctx, app.ID, pr.UserID); errors.Is(err, store.ErrNotFound) {
		return nil, protocol.Errorf(protocol.CodeForbidden, "the user has not installed app %q", app.ID).WithDetail("reason", auth.ReasonNotInstalled)
	} else if err != nil {
		return nil, err
	}
	if len(app.SettingsSchema) > 0 {
		sch, err := s.schemas.compile(app.SettingsSchema)
		if err != nil {
			return nil, schemaError("settings", err)
		}
		if err := validate(sch, p.Values, "values"); err != nil {
			return nil, err
		}
	}
	st, err := s.deps.Store.PutAppSettings(ctx, app.ID, pr.UserID, p.Values, p.Version)
	if errors.Is(err, store.ErrConflict) {
		return nil, protocol.Errorf(protocol.CodeConflict, "the settings are at version %d, not %d: read them again", st.Version, p.Version).
			WithDetail("version", st.Version)
	}
	if err != nil {
		return nil, err
	}
	s.settingsChanged(ctx, st)
	return protocol.AppSettings{Schema: app.SettingsSchema, Values: st.Values, Version: st.Version}, nil
}

// settingsChanged tells the app: settings.changed on each of the user's
// sessions with a socket on this node, else the settings.changed webhook.
func (s *Service) settingsChanged(ctx context.Context, st store.AppSettings) {
	sessions, err := s.deps.Store.ActiveAppSessionsOfUser(ctx, st.AppID, st.UserID)
	if err != nil {
		s.log.Warn("apps: find the sessions to tell of new settings; sending the webhook", "app", st.AppID, "err", err)
	}
	pushed := 0
	for _, ss := range sessions {
		s.live.mu.Lock()
		var c *hub.Conn
		if ls := s.live.m[ss.ID]; ls != nil {
			c = ls.conn
		}
		s.live.mu.Unlock()
		if c == nil {
			continue
		}
		data, _ := json.Marshal(protocol.AppSettingsChanged{AppID: st.AppID, SessionID: ss.ID, Version: st.Version, Values: st.Values, UpdatedAt: st.UpdatedAt})
		if c.SendEvent(protocol.EventSettingsChanged, "", "", 0, data) {
			pushed++
		}
	}
	if pushed > 0 {
		return
	}
	body := protocol.AppSettingsChanged{Type: protocol.EventSettingsChanged, AppID: st.AppID, UserID: s.pseudonym(st.AppID, st.UserID),
		Version: st.Version, Values: st.Values, UpdatedAt: st.UpdatedAt}
	s.enqueue(st.AppID, body.Type, body, func(_ delivery.Result, err error) {
		if err != nil {
			s.log.Info("apps: settings.changed not delivered", "app", st.AppID, "version", st.Version, "err", err)
		}
	})
}
