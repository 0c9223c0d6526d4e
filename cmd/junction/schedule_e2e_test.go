package main

import (
	"context"

	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/schedule"
	"github.com/junctionhq/junction/protocol"
)

// TestScheduleViaAdminAPI: a job created through the admin API publishes on
// its schedule to a channel that a real WebSocket subscriber receives; the
// API lists, shows, runs and deletes it and keeps its history.
func TestScheduleViaAdminAPI(t *testing.T) {
	m := startServer(t, nil)
	admin := mintToken(t, m, "ops", "console", "browser", "admin")
	sub := dialClient(t, m, "u1", "phone1", "phone")
	got := make(chan client.Publication, 16)
	if _, err := sub.Subscribe(context.Background(), "public:ticker", func(p client.Publication) { got <- p }); err != nil {
		t.Fatal(err)
	}

	spec := map[string]any{"name": "ticker", "cron": "* * * * * *", "timeZone": "Europe/Paris",
		"action": map[string]any{"publish": map[string]any{"topic": "public:ticker", "data": map[string]any{"tick": true}}}}
	var job protocol.Schedule
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules", spec, 201, &job)
	if job.Name != "ticker" || job.Source != "api" || job.TimeZone != "Europe/Paris" || job.CreatedAt.IsZero() ||
		job.NextRunAt.Before(time.Now().Add(-time.Second)) || job.NextRunAt.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("created %+v", job)
	}

	// The subscriber receives the scheduled publication.
	select {
	case p := <-got:
		if string(p.Data) != `{"tick":true}` || p.Topic != "public:ticker" {
			t.Fatalf("publication %s on %s, want {\"tick\":true} on public:ticker", p.Data, p.Topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no scheduled publication within 10s of a job ticking every second")
	}

	var list protocol.ScheduleList
	apiJSON(t, m, admin, "GET", "/api/v1/admin/schedules", nil, 200, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "ticker" {
		t.Fatalf("list %+v", list)
	}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/schedules/ticker", nil, 200, &job)
	var run protocol.ScheduleRun
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules/ticker/run", nil, 200, &run)
	if !run.OK || run.Trigger != "manual" || run.Node != m.Hub.NodeID() || !strings.Contains(string(run.Result), `"offset"`) {
		t.Fatalf("run now: %+v", run)
	}
	var runs protocol.ScheduleRunList
	apiJSON(t, m, admin, "GET", "/api/v1/admin/schedules/ticker/runs?limit=100", nil, 200, &runs)
	scheduled := 0
	for _, r := range runs.Items {
		if r.Trigger == "schedule" {
			scheduled++
			if r.Tick.IsZero() || !r.OK {
				t.Errorf("scheduled run %+v", r)
			}
		}
	}
	if scheduled == 0 || !slicesContainsRun(runs.Items, run.ID) {
		t.Fatalf("history %+v: want the scheduled runs and the manual one", runs.Items)
	}

	for _, tc := range []struct {
		name, token, method, path string
		body                      any
		status                    int
		code                      string
	}{
		{"not admin", mintToken(t, m, "u1", "phone1", "phone"), "GET", "/api/v1/admin/schedules", nil, 403, "forbidden"},
		{"no credential", "", "POST", "/api/v1/admin/schedules/ticker/run", nil, 401, "unauthorized"},
		{"duplicate", admin, "POST", "/api/v1/admin/schedules", spec, 409, "conflict"},
		{"bad cron", admin, "POST", "/api/v1/admin/schedules", map[string]any{"name": "x", "cron": "every day",
			"action": map[string]any{"publish": map[string]any{"topic": "public:x", "data": 1}}}, 400, "bad_request"},
		{"unknown namespace", admin, "POST", "/api/v1/admin/schedules", map[string]any{"name": "x", "cron": "@daily",
			"action": map[string]any{"publish": map[string]any{"topic": "nowhere:x", "data": 1}}}, 400, "bad_request"},
		{"unknown member", admin, "POST", "/api/v1/admin/schedules", map[string]any{"name": "x", "cron": "@daily", "when": "now",
			"action": map[string]any{"publish": map[string]any{"topic": "public:x", "data": 1}}}, 400, "bad_request"},
		{"unknown job", admin, "GET", "/api/v1/admin/schedules/nope", nil, 404, "not_found"},
		{"bad limit", admin, "GET", "/api/v1/admin/schedules/ticker/runs?limit=0", nil, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := apiCall(t, m, tc.token, tc.method, tc.path, tc.body)
			if e := decodeAPIError(t, raw); status != tc.status || e.Error.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, raw, tc.status, tc.code)
			}
		})
	}

	apiJSON(t, m, admin, "DELETE", "/api/v1/admin/schedules/ticker", nil, 200, &job)
	if status, _ := apiCall(t, m, admin, "GET", "/api/v1/admin/schedules/ticker", nil); status != 404 {
		t.Fatalf("after delete: %d, want 404", status)
	}
	// No publication after the delete: drain, then wait past two ticks,
	// observed through the channel's position rather than a sleep.
	pos, err := m.Hub.Position(context.Background(), "public:ticker")
	if err != nil {
		t.Fatal(err)
	}
	var marker protocol.Schedule
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules", map[string]any{"name": "marker", "cron": "* * * * * *",
		"action": map[string]any{"publish": map[string]any{"topic": "public:marker", "data": 1}}}, 201, &marker)
	eventually(t, "two ticks of another job", func() bool {
		p, _ := m.Hub.Position(context.Background(), "public:marker")
		return p.Offset >= 2
	})
	if after, _ := m.Hub.Position(context.Background(), "public:ticker"); after.Offset != pos.Offset {
		t.Fatalf("public:ticker went from %d to %d after the job was deleted", pos.Offset, after.Offset)
	}
}

func slicesContainsRun(runs []protocol.ScheduleRun, id string) bool {
	for _, r := range runs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// TestScheduledRPCFromConfig: a job of the configuration file calls a
// method served by a device, as the configured user; the device's answer
// is the run's result.
func TestScheduledRPCFromConfig(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Schedule.Jobs = []schedule.JobConfig{{Name: "lights-on", Cron: "0 7 * * *", TimeZone: "America/New_York",
			RPC: &schedule.RPCConfig{User: "u1", Device: "relay1", Method: "relay.set", Params: map[string]any{"on": true}}}}
	})
	calls := make(chan echoResult, 4)
	machine(t, m, "u1", "relay1", false, map[string]client.RPCHandler{"relay.set": func(ctx context.Context, req *client.RPCRequest) (any, error) {
		r := echoResult{Params: req.Params, Caller: req.Caller, Method: req.Method}
		calls <- r
		return map[string]bool{"on": true}, nil
	}})
	admin := mintToken(t, m, "ops", "console", "browser", "admin")

	var job protocol.Schedule
	apiJSON(t, m, admin, "GET", "/api/v1/admin/schedules/lights-on", nil, 200, &job)
	ny, _ := time.LoadLocation("America/New_York")
	if job.Source != "config" || job.NextRunAt.In(ny).Hour() != 7 || job.NextRunAt.In(ny).Minute() != 0 {
		t.Fatalf("configured job %+v: want source config, next at 07:00 New York time", job)
	}
	var run protocol.ScheduleRun
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules/lights-on/run", nil, 200, &run)
	if !run.OK || string(run.Result) != `{"on":true}` {
		t.Fatalf("run %+v, want ok with the device's result", run)
	}
	c := <-calls
	if string(c.Params) != `{"on":true}` || c.Caller.UserID != "u1" || c.Method != "relay.set" {
		t.Fatalf("the device saw %+v", c)
	}
	// A configured job is not deleted through the API.
	status, raw := apiCall(t, m, admin, "DELETE", "/api/v1/admin/schedules/lights-on", nil)
	if e := decodeAPIError(t, raw); status != 409 || e.Error.Code != "conflict" {
		t.Fatalf("delete a configured job: %d %s, want 409 conflict", status, raw)
	}
	// Another user's device: the grants apply, the run records forbidden.
	var other protocol.Schedule
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules", map[string]any{"name": "intruder", "cron": "@yearly",
		"action": map[string]any{"rpc": map[string]any{"user": "u2", "device": "relay1", "method": "relay.set"}}}, 201, &other)
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules/intruder/run", nil, 200, &run)
	if run.OK || run.Error == nil || run.Error.Code != protocol.CodeForbidden {
		t.Fatalf("a call as another user: %+v, want a failed run with forbidden", run)
	}
}
