package protocol

import (
	"encoding/json"
	"time"
)

// Scheduled jobs (docs/scheduler.md): the admin API's bodies and results.

// ScheduleSpec is a job as created: POST /api/v1/admin/schedules.
type ScheduleSpec struct {
	// Name identifies the job: 1..64 bytes of a-z, 0-9, '.', '_', '-'.
	Name string `json:"name" doc:"1..64 bytes of a-z 0-9 . _ -"`
	// Cron is the schedule: five fields (minute hour day-of-month month
	// day-of-week), six with seconds first, or a descriptor (@hourly, ...).
	Cron string `json:"cron" doc:"cron expression: [second] minute hour day-of-month month day-of-week, or @yearly @monthly @weekly @daily @hourly"`
	// TimeZone is the IANA zone the expression is read in; default UTC.
	TimeZone string `json:"timeZone,omitempty" doc:"IANA time zone the expression is read in (default UTC)"`
	// Action is what a run does.
	Action ScheduleAction `json:"action"`
}

// ScheduleAction is what a run does: exactly one member is set.
type ScheduleAction struct {
	// Publish publishes to a channel on the server's behalf.
	Publish *SchedulePublish `json:"publish,omitempty"`
	// RPC calls a method served by a device.
	RPC *ScheduleRPC `json:"rpc,omitempty"`
	// Backend calls a method on a backend of the proxy configuration.
	Backend *ScheduleBackend `json:"backend,omitempty"`
}

// SchedulePublish publishes Data to Topic.
type SchedulePublish struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data" doc:"any JSON value but null"`
}

// ScheduleRPC calls Method on Device as User: the user's grants apply, and
// the device sees the call's meta.caller as that user.
type ScheduleRPC struct {
	User      string          `json:"user" doc:"the call is made as this user (its RPC grants apply)"`
	Device    string          `json:"device"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params,omitempty" schema:"object"`
	TimeoutMs int64           `json:"timeoutMs,omitempty" schema:"min=0" doc:"default hub.rpc.default_timeout"`
}

// ScheduleBackend calls Method on Backend, a backend of proxy.backends,
// as User: the backend receives a signed request of kind method, as for a
// routed method call (docs/proxy.md), with that user as the principal and
// the job's name as schedule.
type ScheduleBackend struct {
	Backend string          `json:"backend" doc:"name of a backend of proxy.backends"`
	User    string          `json:"user" doc:"the call is made as this user (the request's principal)"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty" schema:"object"`
}

// Schedule is a job as the admin API shows it.
type Schedule struct {
	Name     string         `json:"name"`
	Cron     string         `json:"cron"`
	TimeZone string         `json:"timeZone"`
	Action   ScheduleAction `json:"action"`
	// Source is "config" (the configuration file: read-only here) or
	// "api".
	Source string `json:"source" schema:"enum=config|api"`
	// NextRunAt is the next tick, in UTC.
	NextRunAt time.Time `json:"nextRunAt"`
	// CreatedAt is when the API created it (absent for config jobs).
	CreatedAt time.Time `json:"createdAt,omitzero"`
}

// ScheduleList answers GET /api/v1/admin/schedules, by name.
type ScheduleList struct {
	Items []Schedule `json:"items" schema:"nonnull"`
}

// ScheduleRun is one run of a job.
type ScheduleRun struct {
	ID  string `json:"id"`
	Job string `json:"job"`
	// Trigger is "schedule" (a tick) or "manual" (run now).
	Trigger string `json:"trigger" schema:"enum=schedule|manual"`
	// Tick is the scheduled time the run is for (absent for manual runs).
	Tick time.Time `json:"tick,omitzero"`
	// Node ran it.
	Node       string    `json:"node"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	// OK is false when the action failed; Error says why.
	OK    bool   `json:"ok"`
	Error *Error `json:"error,omitempty"`
	// Result is the action's: {epoch, offset} of a publication, the
	// device's result of a call, the backend's result of a backend call.
	Result json.RawMessage `json:"result,omitempty"`
}

// ScheduleRunList answers GET /api/v1/admin/schedules/{name}/runs, newest
// first.
type ScheduleRunList struct {
	Items []ScheduleRun `json:"items" schema:"nonnull"`
}
