package protocol

import "time"

// Admin views of the apps platform (docs/apps.md, "Reference"): one app's
// installations, and the recent output outcomes of one device.

// AppInstallsParams pages through one app's installations
// (apps.adminInstalls).
type AppInstallsParams struct {
	ID    string `json:"id" doc:"the app id"`
	After string `json:"after,omitempty" doc:"the last user id of the previous page"`
	Limit int    `json:"limit,omitempty" doc:"1..100 (default 50)"`
}

// AppInstallDetail is one user's installation of an app, as an operator
// sees it: the grant and the user's sessions of the app.
type AppInstallDetail struct {
	UserID    string    `json:"userId"`
	Scopes    []string  `json:"scopes" schema:"nonnull" doc:"the scopes the user granted"`
	CreatedAt time.Time `json:"createdAt" doc:"when the user installed the app"`
	UpdatedAt time.Time `json:"updatedAt" doc:"when the grant last changed"`
	// ActiveSessions counts the user's sessions of the app that are not
	// stopped (starting, running, transport_down, resurrecting, dormant).
	ActiveSessions int64 `json:"activeSessions" doc:"the user's sessions of the app that are not stopped"`
	// LastSessionAt is when the user's latest session of the app started.
	LastSessionAt *time.Time `json:"lastSessionAt,omitempty" doc:"when the user's latest session of the app was created; absent: never started"`
}

// AppInstallDetailList answers apps.adminInstalls: the app's installations
// in user id order.
type AppInstallDetailList struct {
	AppID    string             `json:"appId"`
	Installs []AppInstallDetail `json:"installs" schema:"nonnull"`
	Next     string             `json:"next,omitempty" doc:"the after of the next page; absent on the last"`
}

// DeviceOutputsParams reads one device's recent output outcomes
// (apps.deviceOutputs).
type DeviceOutputsParams struct {
	DeviceID string `json:"deviceId"`
	Limit    int    `json:"limit,omitempty" doc:"1..50 (default 50)"`
}

// OutputOutcome is the one terminal outcome of one output request on a
// device, as the arbiter decided it, with how the request ended when it was
// shown.
type OutputOutcome struct {
	AppID     string `json:"appId"`
	SessionID string `json:"sessionId"`
	RequestID string `json:"requestId" doc:"the id the app gave (or the gateway made)"`
	Surface   string `json:"surface"`
	Priority  string `json:"priority" schema:"enum=ambient|background|foreground|system" doc:"the app's priority class, stamped by the gateway"`
	Outcome   string `json:"outcome" schema:"enum=shown|superseded|rejected|expired|cleared" doc:"the request's one terminal outcome"`
	Reason    string `json:"reason,omitempty" schema:"enum=busy|unknown_surface|invalid|duplicate|full|device_gone" doc:"for rejected (and cleared with device_gone)"`
	// RetryAfterMs: for rejected with busy, when the surface might free up.
	RetryAfterMs int64     `json:"retryAfterMs,omitempty"`
	Force        bool      `json:"force,omitempty" doc:"the request skipped the surface's minimum interval"`
	RequestedAt  time.Time `json:"requestedAt" doc:"when the gateway took the request"`
	DecidedAt    time.Time `json:"decidedAt" doc:"when the terminal outcome was decided"`
	// EndedAt and EndReason: for shown, when and why it left the device
	// for good (the last hidden); absent while it is on the device or
	// waits to be restored.
	EndedAt   *time.Time `json:"endedAt,omitempty" doc:"for shown: when it left the device for good; absent while shown or waiting to be restored"`
	EndReason string     `json:"endReason,omitempty" schema:"enum=preempted|expired|cleared|superseded|device_gone" doc:"for shown: why it left the device"`
}

// DeviceOutputs answers apps.deviceOutputs: the device's most recent
// output outcomes on the node that answers, newest first. The record is in
// memory, per node (the node the device's connection declared its
// surfaces on), and not persisted.
type DeviceOutputs struct {
	DeviceID string          `json:"deviceId"`
	NodeID   string          `json:"nodeId" doc:"the node that answered: the record is per node"`
	Declared bool            `json:"declared" doc:"the device has declared surfaces on this node now"`
	Outcomes []OutputOutcome `json:"outcomes" schema:"nonnull" doc:"newest first; at most the last 50 of the device"`
}
