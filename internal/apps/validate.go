package apps

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Limits of an app's registration.
const (
	maxAppIDLen    = 128
	maxNameLen     = 100
	maxURLLen      = 2048
	maxScopes      = 64
	maxTools       = 64
	maxSchemaBytes = 64 << 10 // settings schema, and each tool's params schema
	maxWordLen     = 64       // a scope, capability or tool name
	maxUserIDLen   = 128
)

// Kinds and priority classes.
var (
	kinds      = []string{"foreground", "background", "system"}
	priorities = []string{"system", "foreground", "background", "ambient"}
)

// ValidAppID reports whether id is a reverse-DNS app id: 3..128 characters,
// at least two labels separated by dots, each 1..63 characters of
// [a-z0-9-] (and '_' after the first label) that neither starts nor ends
// with '-'.
func ValidAppID(id string) bool {
	if len(id) < 3 || len(id) > maxAppIDLen {
		return false
	}
	labels := strings.Split(id, ".")
	if len(labels) < 2 {
		return false
	}
	for i, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' && i > 0) {
				return false
			}
		}
	}
	return true
}

// validWord reports whether w is a scope, capability or tool name: 1..64
// characters of [a-z0-9._:-] starting with a letter or digit.
func validWord(w string) bool {
	if w == "" || len(w) > maxWordLen {
		return false
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '.' || c == '_' || c == ':' || c == '-')) {
			return false
		}
	}
	return true
}

func checkWords(field string, ws []string, max int) error {
	if len(ws) > max {
		return protocol.FieldError(field, "over %d entries", max)
	}
	for i, w := range ws {
		if !validWord(w) {
			return protocol.FieldError(field, "entry %d: want 1..%d characters of [a-z0-9._:-]", i, maxWordLen)
		}
		if slices.Contains(ws[:i], w) {
			return protocol.FieldError(field, "%q is listed twice", w)
		}
	}
	return nil
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{' && json.Valid(raw)
}

func checkCreate(p *protocol.AppCreateParams) error {
	if !ValidAppID(p.ID) {
		return protocol.FieldError("id", "want a reverse-DNS id such as com.example.captions: 3..%d characters, two or more dot-separated labels of [a-z0-9-]", maxAppIDLen)
	}
	if p.Name == "" || len(p.Name) > maxNameLen {
		return protocol.FieldError("name", "want 1..%d bytes", maxNameLen)
	}
	if p.Kind == "" {
		p.Kind = "foreground"
	}
	if !slices.Contains(kinds, p.Kind) {
		return protocol.FieldError("kind", "want one of %v", kinds)
	}
	if p.Priority == "" {
		p.Priority = p.Kind
	}
	if !slices.Contains(priorities, p.Priority) {
		return protocol.FieldError("priority", "want one of %v", priorities)
	}
	if p.WebhookURL != "" {
		u, err := url.Parse(p.WebhookURL)
		if err != nil || len(p.WebhookURL) > maxURLLen || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
			return protocol.FieldError("webhookUrl", "want an absolute http or https URL without credentials or fragment, up to %d bytes", maxURLLen)
		}
	}
	if err := checkWords("scopes", p.Scopes, maxScopes); err != nil {
		return err
	}
	if slices.Contains(p.Scopes, auth.ScopeAdmin) {
		return protocol.FieldError("scopes", "an app may never hold %q", auth.ScopeAdmin)
	}
	if err := checkWords("capabilities", p.Capabilities, maxScopes); err != nil {
		return err
	}
	if len(p.SettingsSchema) > 0 && (!isObject(p.SettingsSchema) || len(p.SettingsSchema) > maxSchemaBytes) {
		return protocol.FieldError("settingsSchema", "want a JSON Schema object up to %d bytes", maxSchemaBytes)
	}
	if len(p.SettingsSchema) > 0 {
		if err := checkSchema(p.SettingsSchema); err != nil {
			return protocol.FieldError("settingsSchema", "not a usable JSON Schema: %v", err)
		}
	}
	if len(p.Tools) > maxTools {
		return protocol.FieldError("tools", "over %d tools", maxTools)
	}
	for i, t := range p.Tools {
		if !validWord(t.Name) {
			return protocol.FieldError("tools", "tool %d: name: want 1..%d characters of [a-z0-9._:-]", i, maxWordLen)
		}
		if slices.ContainsFunc(p.Tools[:i], func(o protocol.AppTool) bool { return o.Name == t.Name }) {
			return protocol.FieldError("tools", "tool %q is listed twice", t.Name)
		}
		if len(t.Description) > 1024 {
			return protocol.FieldError("tools", "tool %q: description over 1024 bytes", t.Name)
		}
		if len(t.Params) > 0 && (!isObject(t.Params) || len(t.Params) > maxSchemaBytes) {
			return protocol.FieldError("tools", "tool %q: params: want a JSON Schema object up to %d bytes", t.Name, maxSchemaBytes)
		}
		if len(t.Params) > 0 {
			if err := checkSchema(t.Params); err != nil {
				return protocol.FieldError("tools", "tool %q: params: not a usable JSON Schema: %v", t.Name, err)
			}
		}
	}
	if len(p.Owner) > maxUserIDLen {
		return protocol.FieldError("owner", "over %d bytes", maxUserIDLen)
	}
	if p.KeyTTLMs < 0 {
		return protocol.FieldError("keyTtlMs", "want a non-negative duration")
	}
	return nil
}

func checkAppID(p *protocol.AppIDParams) error { return checkID("id", p.ID) }

// checkID refuses what cannot be an app id (any string may be asked for
// and answers not_found; the bound keeps lookups small).
func checkID(field, id string) error {
	if id == "" {
		return protocol.FieldError(field, "required")
	}
	if len(id) > maxAppIDLen {
		return protocol.FieldError(field, "over %d bytes", maxAppIDLen)
	}
	return nil
}

func checkAppPage(p *protocol.AppListParams) error {
	return checkPage(p.After, p.Limit)
}

func checkInstallPage(p *protocol.AppInstallListParams) error {
	return checkPage(p.After, p.Limit)
}

func checkPage(after string, limit int) error {
	if len(after) > maxAppIDLen {
		return protocol.FieldError("after", "over %d bytes", maxAppIDLen)
	}
	if limit < 0 || limit > store.MaxPageLimit {
		return protocol.FieldError("limit", "want 1..%d", store.MaxPageLimit)
	}
	return nil
}

func checkRotate(p *protocol.AppKeyRotateParams) error {
	if err := checkID("id", p.ID); err != nil {
		return err
	}
	if p.OverlapMs != nil && *p.OverlapMs < 0 {
		return protocol.FieldError("overlapMs", "want a non-negative duration")
	}
	if p.OverlapMs != nil && time.Duration(*p.OverlapMs) > maxDuration/time.Millisecond {
		return protocol.FieldError("overlapMs", "too long")
	}
	if p.TTLMs < 0 || time.Duration(p.TTLMs) > maxDuration/time.Millisecond {
		return protocol.FieldError("ttlMs", "want a non-negative duration up to ten years")
	}
	return nil
}

// maxDuration bounds the durations of a key (ten years).
const maxDuration = 10 * 365 * 24 * time.Hour

func checkRevoke(p *protocol.AppKeyRevokeParams) error {
	if err := checkID("id", p.ID); err != nil {
		return err
	}
	if p.KeyID == "" || len(p.KeyID) > 64 {
		return protocol.FieldError("keyId", "want 1..64 bytes")
	}
	return nil
}

func checkInstall(p *protocol.AppInstallParams) error {
	if err := checkID("appId", p.AppID); err != nil {
		return err
	}
	return checkWords("scopes", p.Scopes, maxScopes)
}

func checkUninstall(p *protocol.AppUninstallParams) error { return checkID("appId", p.AppID) }

// appFromParams is the store record of a checked registration.
func appFromParams(p *protocol.AppCreateParams) store.App {
	tools := p.Tools
	if tools == nil {
		tools = []protocol.AppTool{}
	}
	raw, _ := json.Marshal(tools)
	return store.App{ID: p.ID, Name: p.Name, Kind: p.Kind, WebhookURL: p.WebhookURL, Scopes: p.Scopes,
		Priority: p.Priority, SettingsSchema: p.SettingsSchema, Tools: raw, Capabilities: p.Capabilities, Owner: p.Owner}
}

// wireApp is the protocol form of a.
func wireApp(a store.App) protocol.App {
	out := protocol.App{ID: a.ID, Name: a.Name, Kind: a.Kind, WebhookURL: a.WebhookURL, Scopes: nonNil(a.Scopes),
		Priority: a.Priority, SettingsSchema: a.SettingsSchema, Tools: []protocol.AppTool{}, Capabilities: nonNil(a.Capabilities),
		Owner: a.Owner, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
	_ = json.Unmarshal(a.Tools, &out.Tools) // written by appFromParams
	if out.Tools == nil {
		out.Tools = []protocol.AppTool{}
	}
	return out
}

// wireKey is the protocol form of k, never with its MAC.
func (s *Service) wireKey(k store.AppKey) protocol.AppKey {
	now := s.deps.Now()
	out := protocol.AppKey{ID: k.ID, AppID: k.AppID, CreatedAt: k.CreatedAt,
		Active: k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	out.ExpiresAt, out.RevokedAt, out.LastUsedAt = opt(k.ExpiresAt), opt(k.RevokedAt), opt(k.LastUsedAt)
	return out
}

func wireInstall(in store.Install) protocol.AppInstall {
	return protocol.AppInstall{AppID: in.AppID, UserID: in.UserID, Scopes: nonNil(in.Scopes), CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
