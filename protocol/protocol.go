// Package protocol defines Junction's wire protocol v1: the frames that travel
// over a WebSocket in either direction, their JSON encoding, the stable error
// codes and the close codes with their reconnect advice.
//
// The package performs no I/O. Every decoder in it is fuzzed.
//
// One JSON object is one frame. A WebSocket text message carries one frame or
// several frames separated by '\n'. Frames are compact JSON: a raw newline may
// only appear between frames, never inside one (JSON strings escape it).
package protocol

// Version is the protocol version announced in the welcome event.
const Version = 1

// Subprotocol is the WebSocket subprotocol name of protocol v1. The server
// always answers with it when the client offered it.
const Subprotocol = "junction.v1"

// BearerSubprotocolPrefix prefixes a credential carried as a WebSocket
// subprotocol ("junction.bearer.<credential>"), for browsers, which cannot set
// an Authorization header on a WebSocket.
const BearerSubprotocolPrefix = "junction.bearer."

// DefaultMaxFrameBytes is the default limit on one inbound WebSocket message.
const DefaultMaxFrameBytes = 64 << 10

// Frame types, the value of the "type" member of every frame.
const (
	TypeRequest  = "req"
	TypeResponse = "res"
	TypeEvent    = "event"
)

// Events the server sends that are not tied to a method.
const (
	// EventWelcome is always the first frame a connection receives; its data is a Welcome.
	EventWelcome = "welcome"
	// EventShutdown announces that the server is draining; its data is a Shutdown.
	EventShutdown = "server.shutdown"
	// EventTokenExpiring warns that the connection's credential is about to
	// expire; its data is a TokenExpiring.
	EventTokenExpiring = "token.expiring"
)

// Welcome is the data of the welcome event.
type Welcome struct {
	Protocol           int       `json:"protocol"`
	ConnID             string    `json:"connId"`
	NodeID             string    `json:"nodeId"`
	Principal          Principal `json:"principal"`
	HeartbeatMs        int64     `json:"heartbeatMs"`
	HeartbeatTimeoutMs int64     `json:"heartbeatTimeoutMs"`
	Limits             Limits    `json:"limits"`
	Features           []string  `json:"features" schema:"nonnull"`
}

// Principal describes who a connection is authenticated as.
type Principal struct {
	UserID   string   `json:"userId,omitempty"`
	DeviceID string   `json:"deviceId,omitempty"`
	Kind     string   `json:"kind,omitempty"`
	AppID    string   `json:"appId,omitempty"`
	Scopes   []string `json:"scopes" schema:"nonnull"`
	// ExpiresAtMs is the credential's expiry in Unix milliseconds, 0 when it does not expire.
	ExpiresAtMs int64 `json:"expiresAtMs,omitempty"`
}

// Limits are the limits the server enforces on a connection.
type Limits struct {
	MaxFrameBytes    int `json:"maxFrameBytes"`
	MaxQueueBytes    int `json:"maxQueueBytes"`
	MaxQueueFrames   int `json:"maxQueueFrames"`
	MaxSubscriptions int `json:"maxSubscriptions"`
	// RequestsPerSecond is the sustained request rate a connection may use,
	// RequestBurst how far above it a short burst may go; 0 means unlimited.
	RequestsPerSecond int `json:"requestsPerSecond"`
	RequestBurst      int `json:"requestBurst"`
	// MaxBinaryBytes limits one inbound binary message (a device stream
	// frame, docs/PROTOCOL.md §11); absent when the server takes no binary
	// messages (they close with 1003).
	MaxBinaryBytes int `json:"maxBinaryBytes,omitempty"`
}

// Shutdown is the data of the server.shutdown event.
type Shutdown struct {
	// ReconnectAfterMs is how long the client should wait before reconnecting;
	// a small random jitter on top of it spreads the reconnecting clients.
	ReconnectAfterMs int64  `json:"reconnectAfterMs"`
	Reason           string `json:"reason"`
}

// TokenExpiring is the data of the token.expiring event.
type TokenExpiring struct {
	ExpiresAtMs int64 `json:"expiresAtMs"`
}

// Meta travels on requests relayed by the gateway (RPC): who is calling.
type Meta struct {
	Caller *Caller `json:"caller,omitempty"`
}

// Caller identifies the origin of a relayed request.
type Caller struct {
	UserID   string `json:"userId"`
	DeviceID string `json:"deviceId,omitempty"`
	AppID    string `json:"appId,omitempty"`
}
