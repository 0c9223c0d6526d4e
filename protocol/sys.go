package protocol

// EventError is the event the server sends for a frame it cannot answer
// with a response (no usable id, an unexpected client event, a malformed
// response to a relayed request); its data is an Error.
const EventError = "error"

// PingResult is the result of sys.ping.
type PingResult struct {
	Pong   bool  `json:"pong"`
	TimeMs int64 `json:"timeMs"`
}

// InfoResult is the result of sys.info.
type InfoResult struct {
	Protocol    int      `json:"protocol"`
	NodeID      string   `json:"nodeId"`
	Features    []string `json:"features" schema:"nonnull"`
	Methods     []string `json:"methods" schema:"nonnull"`
	Connections int      `json:"connections"`
}

// WhoamiResult is the result of conn.whoami.
type WhoamiResult struct {
	ConnID    string    `json:"connId"`
	NodeID    string    `json:"nodeId"`
	Principal Principal `json:"principal"`
}

// RefreshParams are the params of auth.refresh: a fresh access token of the
// same principal.
type RefreshParams struct {
	Token string `json:"token"`
}

// RefreshResult is the result of auth.refresh.
type RefreshResult struct {
	// ExpiresAtMs is the new credential's expiry in Unix milliseconds, 0
	// when it does not expire (an API key without expiry).
	ExpiresAtMs int64 `json:"expiresAtMs"`
}

// ServerInfo is the body of GET /api/v1/info.
type ServerInfo struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
	NodeID   string `json:"nodeId"`
	// WS is the path of the WebSocket endpoint.
	WS string `json:"ws"`
	// WSIoT is the path of the endpoint for constrained devices (compact
	// protocol, tokens of kind iot; docs/iot.md).
	WSIoT    string `json:"wsIot"`
	Lockdown bool   `json:"lockdown"`
}

// Lockdown is the body of GET and POST /api/v1/admin/lockdown (request and
// response): whether lockdown, the kill switch, is on.
type Lockdown struct {
	Enabled *bool `json:"enabled" schema:"nonnull"`
}
