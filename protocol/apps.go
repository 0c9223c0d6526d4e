package protocol

import (
	"encoding/json"
	"time"
)

// Payloads of the apps platform (docs/apps.md): registering apps and their
// API keys (admin), and users installing apps with the scopes they grant.
// They are the REST bodies and the params and results of the methods of
// the same names on the WebSocket.

// App is a registered third-party app.
type App struct {
	ID   string `json:"id" doc:"reverse-DNS name chosen at registration (com.example.captions)"`
	Name string `json:"name"`
	Kind string `json:"kind" schema:"enum=foreground|background|system" doc:"foreground: at most one per device; background; system"`
	// WebhookURL is the base URL of the app's webhooks (https, or http for
	// an app on a private network).
	WebhookURL string   `json:"webhookUrl" doc:"base URL of the app's webhooks"`
	Scopes     []string `json:"scopes" schema:"nonnull" doc:"the scopes the app asks users for"`
	Priority   string   `json:"priority" schema:"enum=system|foreground|background|ambient" doc:"output priority class"`
	// SettingsSchema is the JSON Schema of the app's per-user settings.
	SettingsSchema json.RawMessage `json:"settingsSchema,omitempty" schema:"object" doc:"JSON Schema of the per-user settings"`
	Tools          []AppTool       `json:"tools" schema:"nonnull" doc:"tools the app offers"`
	Capabilities   []string        `json:"capabilities" schema:"nonnull" doc:"device capabilities the app requires (display, microphone, ...)"`
	Owner          string          `json:"owner" doc:"user id of the app's developer or operator"`
	CreatedAt      time.Time       `json:"createdAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
}

// AppTool is a tool an app offers: its name and the JSON Schema of its
// arguments.
type AppTool struct {
	Name        string          `json:"name" doc:"[a-z0-9_.-], 1..64 characters, unique in the app"`
	Description string          `json:"description,omitempty"`
	Params      json.RawMessage `json:"params,omitempty" schema:"object" doc:"JSON Schema of the arguments"`
}

// AppCreateParams registers an app (apps.create, POST /api/v1/admin/apps).
type AppCreateParams struct {
	ID             string          `json:"id" doc:"reverse-DNS name: at least two dot-separated labels of [a-z0-9-] (and _ after the first), 3..128 characters"`
	Name           string          `json:"name" doc:"1..100 characters"`
	Kind           string          `json:"kind,omitempty" schema:"enum=foreground|background|system" doc:"default foreground"`
	WebhookURL     string          `json:"webhookUrl,omitempty"`
	Scopes         []string        `json:"scopes,omitempty" doc:"scopes users may grant; never admin"`
	Priority       string          `json:"priority,omitempty" schema:"enum=system|foreground|background|ambient" doc:"default: the kind's class (ambient for background apps)"`
	SettingsSchema json.RawMessage `json:"settingsSchema,omitempty" schema:"object"`
	Tools          []AppTool       `json:"tools,omitempty"`
	Capabilities   []string        `json:"capabilities,omitempty"`
	Owner          string          `json:"owner,omitempty" doc:"default: the caller's user id"`
	KeyTTLMs       int64           `json:"keyTtlMs,omitempty" schema:"min=0" doc:"lifetime of the first API key (default: no expiry)"`
	Internal       bool            `json:"internal,omitempty" doc:"the app's webhooks may target loopback and private addresses (an app on the operator's network)"`
}

// AppKey describes an API key of an app. The secret is never shown again
// after AppKeySecret.
type AppKey struct {
	ID         string     `json:"id" doc:"the public key id (jk_<id>_...)"`
	AppID      string     `json:"appId"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty" doc:"absent: never expires"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty" doc:"recorded at most once a minute per key"`
	Active     bool       `json:"active" doc:"neither revoked nor expired"`
}

// AppKeySecret is a new API key: the only time its secret is shown.
type AppKeySecret struct {
	Key    string `json:"key" doc:"jk_<id>_<secret>: store it now, it is never shown again"`
	AppKey AppKey `json:"apiKey"`
}

// AppCreated answers apps.create: the app and its first API key.
type AppCreated struct {
	App App          `json:"app"`
	Key AppKeySecret `json:"key"`
	// WebhookSecret signs the app's webhooks; absent when the server has
	// no seal key (then rotate one later).
	WebhookSecret *AppWebhookSecret `json:"webhookSecret,omitempty"`
}

// AppIDParams names an app (apps.get, apps.delete, apps.keys).
type AppIDParams struct {
	ID string `json:"id"`
}

// AppListParams pages through the apps (apps.list).
type AppListParams struct {
	After string `json:"after,omitempty" doc:"the last id of the previous page"`
	Limit int    `json:"limit,omitempty" doc:"1..100 (default 50)"`
}

// AppList answers apps.list.
type AppList struct {
	Apps []App `json:"apps" schema:"nonnull"`
	// Next is the After of the next page, absent on the last.
	Next string `json:"next,omitempty"`
}

// AppDeleted answers apps.delete.
type AppDeleted struct {
	Deleted bool `json:"deleted"`
	// Uninstalled is how many users had the app installed.
	Uninstalled int `json:"uninstalled"`
}

// AppKeyRotateParams adds an API key to an app (apps.rotateKey): the other
// active keys keep working for OverlapMs, then expire.
type AppKeyRotateParams struct {
	ID        string `json:"id" doc:"the app"`
	OverlapMs *int64 `json:"overlapMs,omitempty" schema:"min=0" doc:"how long the app's other keys keep working (default 24 h; 0 ends them now)"`
	TTLMs     int64  `json:"ttlMs,omitempty" schema:"min=0" doc:"lifetime of the new key (default: no expiry)"`
}

// AppKeyRevokeParams revokes one API key (apps.revokeKey).
type AppKeyRevokeParams struct {
	ID    string `json:"id" doc:"the app"`
	KeyID string `json:"keyId"`
}

// AppKeyList answers apps.keys: every key of the app, oldest first.
type AppKeyList struct {
	Keys []AppKey `json:"keys" schema:"nonnull"`
}

// AppInstall is a user's installation of an app.
type AppInstall struct {
	AppID     string    `json:"appId"`
	UserID    string    `json:"userId"`
	Scopes    []string  `json:"scopes" schema:"nonnull" doc:"the scopes the user granted"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// AppInstallParams installs an app for the caller, or changes the scopes
// granted (apps.install).
type AppInstallParams struct {
	AppID  string   `json:"appId"`
	Scopes []string `json:"scopes,omitempty" doc:"a subset of the app's scopes (absent: none); narrowing takes effect at once on the app's live connections"`
}

// AppInstalled answers apps.install.
type AppInstalled struct {
	Install AppInstall `json:"install"`
	Created bool       `json:"created" doc:"false when an installation's scopes were replaced"`
}

// AppUninstallParams uninstalls an app for the caller (apps.uninstall).
type AppUninstallParams struct {
	AppID string `json:"appId"`
}

// AppUninstalled answers apps.uninstall.
type AppUninstalled struct {
	Uninstalled bool `json:"uninstalled"`
	// Disconnected is how many live connections of the app acting for the
	// caller were closed on this node.
	Disconnected int `json:"disconnected"`
}

// AppInstallListParams pages through installations (apps.installs): the
// caller's, or, for an app's own key, the users who installed it.
type AppInstallListParams struct {
	After string `json:"after,omitempty" doc:"the last app id (user id for an app) of the previous page"`
	Limit int    `json:"limit,omitempty" doc:"1..100 (default 50)"`
}

// AppInstallList answers apps.installs.
type AppInstallList struct {
	Installs []AppInstall `json:"installs" schema:"nonnull"`
	Next     string       `json:"next,omitempty"`
}
