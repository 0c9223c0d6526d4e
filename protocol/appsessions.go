package protocol

import (
	"encoding/json"
	"time"
)

// Payloads of app webhooks and app sessions (docs/apps.md): an app's
// webhook secret and delivery log (its owner's view), and the sessions a
// device starts for an app, with the hello the app gets once connected.

// Events of app sessions.
const (
	// EventAppSession tells a device that one of its app sessions changed
	// state (running, transport_down, stopped with a reason, or failed with
	// a stage).
	EventAppSession = "app.session"
	// EventAppStopped tells an app that its session stopped; the socket
	// then closes with 1000 (do not reconnect).
	EventAppStopped = "app.stopped"
)

// App session states.
const (
	AppStateStarting      = "starting"
	AppStateRunning       = "running"
	AppStateTransportDown = "transport_down"
	AppStateStopped       = "stopped"
)

// Stop reasons (AppSession.StopReason).
const (
	StopUserStopped          = "user_stopped"
	StopReplacedByForeground = "replaced_by_foreground"
	StopDeviceGone           = "device_gone"
	StopPermissionRevoked    = "permission_revoked"
	StopAppError             = "app_error"
	StopAdmin                = "admin"
	StopIdle                 = "idle"
)

// Failure stages (AppSession.Stage): where a start failed.
const (
	StageWebhook    = "webhook"    // session.start was not accepted (status, timeout, breaker open, refused target)
	StageConnect    = "connect"    // the app connected with the ticket after it expired
	StageAuth       = "auth"       // the app's key may no longer act for the user (uninstalled, key revoked)
	StageTimeout    = "timeout"    // the app did not connect within the connect deadline
	StageCapability = "capability" // the device lacks a capability the app requires
)

// AppWebhookRotateParams replaces an app's webhook secret
// (apps.rotateWebhookSecret): the previous one keeps signing, beside the
// new one, for OverlapMs.
type AppWebhookRotateParams struct {
	ID        string `json:"id" doc:"the app"`
	OverlapMs *int64 `json:"overlapMs,omitempty" schema:"min=0" doc:"how long the previous secret keeps signing beside the new one (default 24 h; 0 drops it now)"`
	Internal  *bool  `json:"internal,omitempty" doc:"mark the app internal: its webhooks may target loopback and private addresses (absent: unchanged)"`
}

// AppWebhookSecret is an app's new webhook secret: the only time it is
// shown.
type AppWebhookSecret struct {
	AppID  string `json:"appId"`
	Secret string `json:"secret" doc:"whsec_<base64>: verify webhook signatures with it; store it now, it is never shown again"`
	// Internal: the app's webhooks may target loopback and private
	// addresses.
	Internal           bool       `json:"internal"`
	PreviousValidUntil *time.Time `json:"previousValidUntil,omitempty" doc:"until then deliveries carry a second signature, by the previous secret"`
}

// AppDeliveriesParams lists an app's recent webhook attempts
// (apps.deliveries).
type AppDeliveriesParams struct {
	AppID string `json:"appId"`
	Limit int    `json:"limit,omitempty" doc:"1..100 (default 50)"`
}

// AppDelivery is one webhook attempt.
type AppDelivery struct {
	Delivery  string    `json:"delivery" doc:"the webhook-id, the same on every attempt of a delivery"`
	Attempt   int       `json:"attempt" doc:"1 for the first attempt"`
	At        time.Time `json:"at"`
	Stage     string    `json:"stage" schema:"enum=guard|breaker|connect|timeout|response|cancelled" doc:"where the attempt ended: refused by the address guard, refused by the open circuit breaker, connection failed, no response in time, a response (see status), cancelled"`
	Status    int       `json:"status,omitempty" doc:"the HTTP status, for stage response"`
	LatencyMs int64     `json:"latencyMs"`
	Error     string    `json:"error,omitempty"`
	RetryMs   int64     `json:"retryMs,omitempty" doc:"the wait before the next attempt; absent on the last"`
}

// AppDeliveryList answers apps.deliveries: the newest attempts first (the
// server keeps the last 100 per app, in memory).
type AppDeliveryList struct {
	Deliveries []AppDelivery `json:"deliveries" schema:"nonnull"`
}

// AppSession is one app running for one user's device.
type AppSession struct {
	ID         string    `json:"id" doc:"opaque app session id"`
	AppID      string    `json:"appId"`
	DeviceID   string    `json:"deviceId"`
	State      string    `json:"state" schema:"enum=starting|running|transport_down|resurrecting|dormant|stopped"`
	StopReason string    `json:"stopReason,omitempty" schema:"enum=user_stopped|replaced_by_foreground|device_gone|permission_revoked|app_error|admin|idle"`
	Stage      string    `json:"stage,omitempty" schema:"enum=webhook|connect|auth|timeout|capability" doc:"where the start failed, for a failed session"`
	Error      string    `json:"error,omitempty" doc:"why it failed"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	// Recovery (docs/apps.md, "Recovery").
	NextAt   *time.Time `json:"nextAt,omitempty" doc:"when the next recovery step is due: the end of grace (transport_down), the next resurrection attempt or its connect deadline (resurrecting), the device_gone stop (dormant)"`
	Attempts int64      `json:"attempts,omitempty" doc:"resurrection attempts (session.start with resumed: true) made since the session went resurrecting"`
}

// AppSessionStartParams starts an app on the caller's device
// (apps.startSession).
type AppSessionStartParams struct {
	AppID        string   `json:"appId"`
	Capabilities []string `json:"capabilities,omitempty" doc:"the device's capabilities (display, microphone, ...); the app's required ones must be among them"`
}

// AppSessionStarted answers apps.startSession.
type AppSessionStarted struct {
	Session AppSession `json:"session"`
	// Existing: the app was already starting or running on the device; this
	// is that session (no second webhook).
	Existing bool `json:"existing"`
	// Replaced lists the foreground sessions this start stopped
	// (replaced_by_foreground).
	Replaced []string `json:"replaced,omitempty"`
}

// AppSessionRef names an app session (apps.stopSession, apps.hello).
type AppSessionRef struct {
	AppID     string `json:"appId"`
	SessionID string `json:"sessionId"`
}

// AppSessionStopped answers apps.stopSession.
type AppSessionStopped struct {
	Session AppSession `json:"session"`
	// AlreadyStopped: the session had stopped before; nothing changed.
	AlreadyStopped bool `json:"alreadyStopped"`
}

// AppSessionListParams lists an app's sessions (apps.sessions).
type AppSessionListParams struct {
	AppID string `json:"appId"`
	State string `json:"state,omitempty" schema:"enum=starting|running|transport_down|stopped"`
	After string `json:"after,omitempty" doc:"the last id of the previous page"`
	Limit int    `json:"limit,omitempty" doc:"1..100 (default 50)"`
}

// AppSessionList answers apps.sessions.
type AppSessionList struct {
	Sessions []AppSession `json:"sessions" schema:"nonnull"`
	Next     string       `json:"next,omitempty"`
}

// AppSettings are an app's settings for the user: the registered schema
// and the stored values, with their version (0: none stored).
type AppSettings struct {
	Schema  json.RawMessage `json:"schema,omitempty" schema:"object" doc:"the registered JSON Schema; absent when the app registered none"`
	Values  json.RawMessage `json:"values,omitempty" schema:"object" doc:"the user's values; absent when none are stored"`
	Version int64           `json:"version"`
}

// AppDeviceState is what the gateway knows of the device now.
type AppDeviceState struct {
	Kind     string     `json:"kind,omitempty" doc:"the device's kind (from its credential)"`
	Online   bool       `json:"online" doc:"the device has a connection to this gateway node"`
	LastSeen *time.Time `json:"lastSeen,omitempty"`
}

// AppHello answers apps.hello: what a connected app needs to run.
type AppHello struct {
	SessionID string `json:"sessionId"`
	AppID     string `json:"appId"`
	// UserID is the app's pseudonymous id of the user (the same for every
	// session of the user with this app, different for every app).
	UserID string   `json:"userId"`
	Scopes []string `json:"scopes" schema:"nonnull" doc:"the scopes the user granted"`
	// Subscriptions are the server-held effective subscriptions to device
	// streams (streams.set), kept while the app's connection is down.
	Subscriptions []string `json:"subscriptions" schema:"nonnull" doc:"canonical stream ids, sorted"`
	// SubscriptionSeq is the seq of the last applied streams.set (0: none);
	// the next update needs a greater one.
	SubscriptionSeq uint64         `json:"subscriptionSeq" doc:"the last applied streams.set seq (0: none)"`
	Settings        AppSettings    `json:"settings"`
	Capabilities    []string       `json:"capabilities" schema:"nonnull" doc:"the device's capabilities, as it declared them at start"`
	Device          AppDeviceState `json:"device"`
	Priority        string         `json:"priority" doc:"the app's output priority class"`
	// ResumeToken reattaches a new connection of the app to this session
	// (after its server restarted, or the gateway did): dial with the API
	// key and Junction-Resume: <token>. Each hello issues a new one; the
	// previous stops working.
	ResumeToken string `json:"resumeToken" doc:"jr_...: send it as Junction-Resume with the API key to reattach"`
}

// AppStopped is EventAppStopped's data.
type AppStopped struct {
	SessionID string `json:"sessionId"`
	Reason    string `json:"reason" schema:"enum=user_stopped|replaced_by_foreground|device_gone|permission_revoked|app_error|admin|idle"`
	Reconnect bool   `json:"reconnect" doc:"always false: a stopped session is never resumed"`
}

// AppSessionStartHook is the body of the session.start webhook.
type AppSessionStartHook struct {
	Type            string    `json:"type" doc:"session.start"`
	SessionID       string    `json:"sessionId"`
	AppID           string    `json:"appId"`
	UserID          string    `json:"userId" doc:"the app's pseudonymous id of the user"`
	DeviceKind      string    `json:"deviceKind,omitempty"`
	Capabilities    []string  `json:"capabilities"`
	WebSocketURL    string    `json:"websocketUrl" doc:"dial it with Authorization: Bearer <api key> and Junction-Ticket: <ticket>"`
	Ticket          string    `json:"ticket" doc:"single use"`
	TicketExpiresAt time.Time `json:"ticketExpiresAt"`
	Resumed         bool      `json:"resumed" doc:"true for a resurrection: the session existed (the same sessionId) and lost its app; its server-held state is kept"`
}

// AppSessionStopHook is the body of the session.stop webhook.
type AppSessionStopHook struct {
	Type      string `json:"type" doc:"session.stop"`
	SessionID string `json:"sessionId"`
	AppID     string `json:"appId"`
	UserID    string `json:"userId"`
	Reason    string `json:"reason"`
	Stage     string `json:"stage,omitempty"`
}
