package protocol

import (
	"encoding/json"
	"time"
)

// Payloads of app settings and tools (docs/apps.md, "Settings" and
// "Tools"): a user's settings of an app, validated against the app's
// settings schema and versioned; and tools that callers invoke on an app,
// their arguments validated against the tool's schema.

// EventSettingsChanged tells an app session that its user's settings
// changed.
const EventSettingsChanged = "settings.changed"

// MethodToolInvoke is the request the gateway sends an app's session
// connection to run one of its tools (ToolInvoke); the app answers with
// the tool's result.
const MethodToolInvoke = "tool.invoke"

// ScopeTools lets a caller invoke apps' tools (tool.call) for its user.
const ScopeTools = "tools"

// Reasons in the details of errors of settings and tools.
const (
	// ReasonInvalidParams: values or arguments do not follow the app's
	// JSON Schema; details.pointer is the JSON pointer of the offending
	// value.
	ReasonInvalidParams = "invalid_params"
)

// AppSettingsParams names the caller's settings of an app (apps.settings).
type AppSettingsParams struct {
	AppID string `json:"appId"`
}

// AppSettingsPutParams writes the caller's settings of an app
// (apps.setSettings).
type AppSettingsPutParams struct {
	AppID  string          `json:"appId"`
	Values json.RawMessage `json:"values" schema:"object" doc:"a JSON object following the app's settings schema, up to 64 KiB"`
	// Version is the version the writer last saw (0: none written yet);
	// the write is refused with conflict when the stored one differs.
	Version int64 `json:"version" schema:"min=0"`
}

// AppSettingsChanged is EventSettingsChanged's data, and the body of the
// settings.changed webhook (Type and UserID set) sent when no session of
// the user has a socket.
type AppSettingsChanged struct {
	Type      string          `json:"type,omitempty" doc:"settings.changed, in the webhook"`
	AppID     string          `json:"appId"`
	SessionID string          `json:"sessionId,omitempty" doc:"the session told, on the socket"`
	UserID    string          `json:"userId,omitempty" doc:"the app's pseudonymous id of the user, in the webhook"`
	Version   int64           `json:"version"`
	Values    json.RawMessage `json:"values" schema:"object"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

// ToolCallParams invokes a tool of an app for the caller's user
// (tool.call).
type ToolCallParams struct {
	AppID string          `json:"appId"`
	Tool  string          `json:"tool"`
	Args  json.RawMessage `json:"args,omitempty" schema:"object" doc:"the tool's arguments, following its params schema (absent: {})"`
}

// ToolCallResult answers tool.call.
type ToolCallResult struct {
	Result json.RawMessage `json:"result" doc:"what the app answered (any JSON value)"`
	Via    string          `json:"via" schema:"enum=socket|webhook" doc:"how the call reached the app"`
}

// ToolInvoke is the params of MethodToolInvoke, and the body of the
// tool.call webhook (Type set) when the app has no session socket for the
// user: its 2xx response body is the result.
type ToolInvoke struct {
	Type        string          `json:"type,omitempty" doc:"tool.call, in the webhook"`
	CallID      string          `json:"callId" doc:"unique per call"`
	AppID       string          `json:"appId"`
	SessionID   string          `json:"sessionId,omitempty" doc:"the session whose socket carries the call"`
	UserID      string          `json:"userId" doc:"the app's pseudonymous id of the user"`
	Tool        string          `json:"tool"`
	Args        json.RawMessage `json:"args" schema:"object"`
	CallerAppID string          `json:"callerAppId,omitempty" doc:"the app that called, for an app-to-app call"`
}
