package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/junctionhq/junction/internal/proxy"
	"github.com/junctionhq/junction/internal/schedule"
	"github.com/junctionhq/junction/protocol"
)

// TestScheduledBackendCallE2E: jobs whose action is a call to a backend of
// the proxy configuration, created through the admin API and in the
// configuration file, reach a real backend on loopback that verifies the
// Standard Webhooks signature; run now records the backend's result, a
// failing backend's run is recorded as failed, an unknown backend is
// refused at creation, and after a reload that removes the backend the run
// fails with a clear error.
func TestScheduledBackendCallE2E(t *testing.T) {
	reports := newTestBackend(t, func(w http.ResponseWriter, r *proxy.Request) {
		var p struct {
			Days int `json:"days"`
		}
		_ = json.Unmarshal(r.Params, &p)
		reply(200, fmt.Sprintf(`{"result":{"archived":1,"days":%d,"by":%q}}`, p.Days, r.Principal.UserID))(w, r)
	})
	flaky := newTestBackend(t, reply(503, `down`))
	both := proxy.Config{Backends: []proxy.BackendConfig{reports.backend("reports"), flaky.backend("flaky")}}
	var next atomic.Pointer[proxy.Config]
	next.Store(&both)
	m := startServer(t, func(c *Config) {
		c.Proxy = both
		c.Schedule.Jobs = []schedule.JobConfig{{Name: "weekly", Cron: "0 4 * * 1",
			Backend: &schedule.BackendCall{Backend: "reports", User: "ops", Method: "reports.archive", Params: map[string]any{"days": 7}}}}
	}, func(mm *Main) {
		mm.ConfigSource = func() (*Config, error) {
			c := *mm.Config
			c.Proxy = *next.Load()
			return &c, nil
		}
	})
	admin := mintToken(t, m, "ops", "console", "browser", "admin")

	spec := map[string]any{"name": "nightly", "cron": "0 3 * * *", "timeZone": "Europe/Paris",
		"action": map[string]any{"backend": map[string]any{"backend": "reports", "user": "u1", "method": "reports.archive", "params": map[string]any{"days": 30}}}}
	var job protocol.Schedule
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules", spec, 201, &job)
	if job.Action.Backend == nil || job.Action.Backend.Backend != "reports" || job.Source != "api" {
		t.Fatalf("created %+v", job)
	}
	var run protocol.ScheduleRun
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules/nightly/run", nil, 200, &run)
	if !run.OK || run.Trigger != "manual" || string(run.Result) != `{"archived":1,"days":30,"by":"u1"}` {
		t.Fatalf("run now: %+v (error %+v)", run, run.Error)
	}
	reqs := reports.requests()
	if len(reqs) != 1 || reqs[0].Kind != proxy.KindMethod || reqs[0].Method != "reports.archive" || reqs[0].Principal.UserID != "u1" ||
		reqs[0].Schedule != "nightly" || reqs[0].NodeID != m.Hub.NodeID() {
		t.Fatalf("backend requests %+v", reqs)
	}
	var runs protocol.ScheduleRunList
	apiJSON(t, m, admin, "GET", "/api/v1/admin/schedules/nightly/runs", nil, 200, &runs)
	if len(runs.Items) != 1 || runs.Items[0].ID != run.ID || string(runs.Items[0].Result) != string(run.Result) {
		t.Fatalf("history %+v", runs.Items)
	}

	// The configured job calls the backend too, as its user.
	run = protocol.ScheduleRun{}
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules/weekly/run", nil, 200, &run)
	if !run.OK || string(run.Result) != `{"archived":1,"days":7,"by":"ops"}` {
		t.Fatalf("configured job's run: %+v (error %+v)", run, run.Error)
	}

	// A failing backend: the run is recorded as failed, with the error.
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules", map[string]any{"name": "flaky", "cron": "@daily",
		"action": map[string]any{"backend": map[string]any{"backend": "flaky", "user": "u1", "method": "x.ping"}}}, 201, &job)
	run = protocol.ScheduleRun{}
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules/flaky/run", nil, 200, &run)
	if run.OK || run.Error == nil || run.Error.Code != protocol.CodeUnavailable || run.Error.RetryAfterMs <= 0 || run.Result != nil {
		t.Fatalf("failing backend's run: %+v (error %+v)", run, run.Error)
	}
	runs = protocol.ScheduleRunList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/schedules/flaky/runs", nil, 200, &runs)
	if len(runs.Items) != 1 || runs.Items[0].OK || runs.Items[0].Error == nil || runs.Items[0].Error.Code != protocol.CodeUnavailable {
		t.Fatalf("failing backend's history %+v", runs.Items)
	}
	if len(flaky.requests()) != 1 {
		t.Fatalf("the failing backend got %d verified requests, want 1", len(flaky.requests()))
	}

	// An unknown backend is refused at creation.
	status, raw := apiCall(t, m, admin, "POST", "/api/v1/admin/schedules", map[string]any{"name": "ghost", "cron": "@daily",
		"action": map[string]any{"backend": map[string]any{"backend": "nope", "user": "u1", "method": "x.y"}}})
	if e := decodeAPIError(t, raw); status != 400 || e.Error.Code != "bad_request" || !strings.Contains(string(raw), `no backend named \"nope\"`) {
		t.Fatalf("unknown backend: %d %s", status, raw)
	}

	// A reload removes the backend: the jobs stay, their runs fail clearly.
	next.Store(&proxy.Config{Backends: []proxy.BackendConfig{flaky.backend("flaky")}})
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	run = protocol.ScheduleRun{}
	apiJSON(t, m, admin, "POST", "/api/v1/admin/schedules/nightly/run", nil, 200, &run)
	if run.OK || run.Error == nil || run.Error.Code != protocol.CodeNotFound ||
		run.Error.Message != `proxy backend "reports" is not configured (proxy.backends)` {
		t.Fatalf("run after the reload: %+v (error %+v)", run, run.Error)
	}
	runs = protocol.ScheduleRunList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/schedules/nightly/runs", nil, 200, &runs)
	if len(runs.Items) != 2 || runs.Items[0].OK || !runs.Items[1].OK {
		t.Fatalf("history after the reload %+v", runs.Items)
	}
	if n := len(reports.requests()); n != 2 {
		t.Fatalf("the removed backend got %d requests, want the 2 from before the reload", n)
	}
}
