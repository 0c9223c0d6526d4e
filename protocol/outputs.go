package protocol

import "encoding/json"

// Payloads of the output arbiter (docs/apps.md, "Outputs";
// docs/apps-arbiter.md): a device declares its surfaces, apps request
// outputs on them, the device is told what to show and each app what
// happened to each of its requests.

// Events of the output arbiter.
const (
	// EventOutputShow tells a device to show a request's content on a
	// surface, replacing what it shows.
	EventOutputShow = "output.show"
	// EventOutputClear tells a device to show nothing on a surface.
	EventOutputClear = "output.clear"
	// EventOutputStatus tells an app what happened to one of its output
	// requests: queued progress, its one terminal outcome, then hidden and
	// restored for a request that was shown.
	EventOutputStatus = "output.status"
)

// Scopes of the output arbiter, granted by the user at installation.
const (
	// ScopeOutput lets an app session request outputs on its device.
	ScopeOutput = "output"
	// ScopeOutputForce lets it skip a surface's minimum interval (force).
	ScopeOutputForce = "output.force"
)

// OutputSurface is one surface a device declares.
type OutputSurface struct {
	Name          string `json:"name" doc:"1..64 characters of [a-z0-9._:-]: main, overlay, led, speaker, ..."`
	MinIntervalMs int64  `json:"minIntervalMs,omitempty" schema:"min=0" doc:"least time between two commands to the surface (300 for BLE glasses; 0 for a screen)"`
}

// OutputDeclareParams declares the caller device's surfaces
// (output.declare). Declaring again replaces them and starts from clear
// surfaces: every request made for the previous declaration ends
// (cleared, or hidden with cleared).
type OutputDeclareParams struct {
	Surfaces []OutputSurface `json:"surfaces" doc:"1..16 surfaces, names unique"`
	Booting  bool            `json:"booting,omitempty" doc:"the device is booting: requests queue (queued with boot) until output.ready"`
}

// OutputDeclared answers output.declare.
type OutputDeclared struct {
	Surfaces []OutputSurface `json:"surfaces" schema:"nonnull"`
	Booting  bool            `json:"booting"`
}

// OutputReadyParams ends the device's boot phase (output.ready).
type OutputReadyParams struct{}

// OutputReady answers output.ready.
type OutputReady struct {
	// WasBooting: the device was booting; false when it was ready already.
	WasBooting bool `json:"wasBooting"`
}

// OutputRequestParams asks for content on one of the session's device
// surfaces (output.request). The gateway stamps the app, its session and
// its priority class.
type OutputRequestParams struct {
	ID      string          `json:"id,omitempty" doc:"the app's id of the request, 1..64 characters of [A-Za-z0-9._:-], unique among its live requests; default: one the gateway makes"`
	Surface string          `json:"surface"`
	Content json.RawMessage `json:"content" doc:"what to show (any JSON value up to 16 KiB); the gateway does not look at it"`
	TTLMs   int64           `json:"ttlMs,omitempty" schema:"min=0" doc:"how long after the request the content may be shown; 0: until replaced, cleared or preempted"`
	Restore string          `json:"restore,omitempty" schema:"enum=none|on_resume" doc:"on_resume: after a preemption, come back when the preemptor ends; when the surface is busy, wait instead of being rejected"`
	Force   bool            `json:"force,omitempty" doc:"skip the surface's minimum interval (needs the output.force scope); does not skip priority"`
}

// OutputAccepted answers output.request: the request is in the arbiter;
// its outcome comes as output.status events (which may precede this
// answer).
type OutputAccepted struct {
	RequestID string `json:"requestId"`
	Priority  string `json:"priority" schema:"enum=system|foreground|background|ambient" doc:"the class the gateway stamped"`
}

// OutputCancelParams withdraws one of the session's requests by id, or its
// request on a surface (output.cancel): exactly one of the two.
type OutputCancelParams struct {
	RequestID string `json:"requestId,omitempty"`
	Surface   string `json:"surface,omitempty"`
}

// OutputCancelled answers output.cancel; the request's last event
// (cleared, or hidden with cleared) comes as output.status.
type OutputCancelled struct {
	// Found: a live request matched (an unknown or finished one is not an error).
	Found bool `json:"found"`
}

// OutputShow is EventOutputShow's data.
type OutputShow struct {
	Surface   string          `json:"surface"`
	AppID     string          `json:"appId"`
	SessionID string          `json:"sessionId"`
	RequestID string          `json:"requestId"`
	Content   json.RawMessage `json:"content"`
}

// OutputClear is EventOutputClear's data.
type OutputClear struct {
	Surface string `json:"surface"`
}

// OutputStatus is EventOutputStatus's data: one event of one request.
type OutputStatus struct {
	RequestID string `json:"requestId"`
	Surface   string `json:"surface"`
	Kind      string `json:"kind" schema:"enum=queued|shown|superseded|rejected|expired|cleared|hidden|restored" doc:"queued: progress; shown, superseded, rejected, expired, cleared: the one terminal outcome; hidden, restored: after shown"`
	Reason    string `json:"reason,omitempty" schema:"enum=boot|throttle|busy|preempted|expired|cleared|superseded|unknown_surface|invalid|duplicate|full|device_gone" doc:"for queued, rejected and hidden"`
	// RetryAfterMs: for rejected with busy, when the surface may free up.
	RetryAfterMs int64 `json:"retryAfterMs,omitempty"`
	// Pending: hidden, waiting to be restored (restore on_resume).
	Pending bool `json:"pending,omitempty"`
	// Final: the request's last event.
	Final bool `json:"final"`
}
