package schedule

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

func TestMemoryLeasesBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l MemoryLeases
		for i := range 10_000 {
			if ok, _ := l.Acquire(t.Context(), "k"+string(rune(i)), "n", time.Second); !ok {
				t.Fatal("a fresh key was refused")
			}
			time.Sleep(time.Millisecond)
		}
		// About a second of claims is alive at any time; the expired ones
		// were swept as the map grew.
		if n := len(l.held); n > 4*1000+64 {
			t.Fatalf("%d claims held, want about the live ones (1000)", n)
		}
	})
}

func TestNextInTimeZone(t *testing.T) {
	for _, tc := range []struct {
		name, cron, zone string
		after, want      string
	}{
		{"daily in Paris before DST", "0 9 * * *", "Europe/Paris", "2026-03-28T10:00:00Z", "2026-03-29T07:00:00Z"},
		{"daily in Paris in winter", "0 9 * * *", "Europe/Paris", "2026-01-10T00:00:00Z", "2026-01-10T08:00:00Z"},
		{"New York on weekdays", "30 8 * * 1-5", "America/New_York", "2026-07-03T13:00:00Z", "2026-07-06T12:30:00Z"},
		{"UTC by default", "@hourly", "", "2026-01-01T10:20:00Z", "2026-01-01T11:00:00Z"},
		{"seconds field", "*/15 * * * * *", "UTC", "2026-01-01T00:00:07Z", "2026-01-01T00:00:15Z"},
		// DST as documented in docs/scheduler.md: 02:30 does not exist in
		// Paris on 2026-03-29 (skipped that day), and happens twice on
		// 2026-10-25 (two ticks, one per instant).
		{"spring forward skips", "30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", "2026-03-30T00:30:00Z"},
		{"fall back first", "30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},
		{"fall back second", "30 2 * * *", "Europe/Paris", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"},
		{"Tokyo month start", "0 0 1 * *", "Asia/Tokyo", "2026-04-15T00:00:00Z", "2026-04-30T15:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := newJob(protocol.ScheduleSpec{Name: "j", Cron: tc.cron, TimeZone: tc.zone,
				Action: protocol.ScheduleAction{Publish: &protocol.SchedulePublish{Topic: "public:x", Data: json.RawMessage(`1`)}}}, sourceAPI, time.Time{}, checks{})
			if err != nil {
				t.Fatal(err)
			}
			after, _ := time.Parse(time.RFC3339, tc.after)
			want, _ := time.Parse(time.RFC3339, tc.want)
			if got := next(j.sched, j.loc, after); !got.Equal(want) {
				t.Fatalf("next after %s: got %s, want %s", tc.after, got, want)
			}
		})
	}
}

func TestSpecRefusals(t *testing.T) {
	publish := protocol.ScheduleAction{Publish: &protocol.SchedulePublish{Topic: "public:x", Data: json.RawMessage(`{"a":1}`)}}
	for _, tc := range []struct {
		name  string
		spec  protocol.ScheduleSpec
		field string
	}{
		{"bad name", protocol.ScheduleSpec{Name: "Bad Name", Cron: "@daily", Action: publish}, "name"},
		{"no cron", protocol.ScheduleSpec{Name: "a", Action: publish}, "cron"},
		{"@every", protocol.ScheduleSpec{Name: "a", Cron: "@every 1m", Action: publish}, "cron"},
		{"zone prefix", protocol.ScheduleSpec{Name: "a", Cron: "TZ=UTC 0 * * * *", Action: publish}, "cron"},
		{"bad field", protocol.ScheduleSpec{Name: "a", Cron: "61 * * * *", Action: publish}, "cron"},
		{"too many fields", protocol.ScheduleSpec{Name: "a", Cron: "* * * * * * *", Action: publish}, "cron"},
		{"never fires", protocol.ScheduleSpec{Name: "a", Cron: "0 0 30 2 *", Action: publish}, "cron"},
		{"Local zone", protocol.ScheduleSpec{Name: "a", Cron: "@daily", TimeZone: "Local", Action: publish}, "timeZone"},
		{"unknown zone", protocol.ScheduleSpec{Name: "a", Cron: "@daily", TimeZone: "Mars/Olympus", Action: publish}, "timeZone"},
		{"no action", protocol.ScheduleSpec{Name: "a", Cron: "@daily"}, "action"},
		{"two actions", protocol.ScheduleSpec{Name: "a", Cron: "@daily", Action: protocol.ScheduleAction{Publish: publish.Publish,
			RPC: &protocol.ScheduleRPC{User: "u", Device: "d", Method: "m"}}}, "action"},
		{"null data", protocol.ScheduleSpec{Name: "a", Cron: "@daily", Action: protocol.ScheduleAction{Publish: &protocol.SchedulePublish{Topic: "public:x", Data: json.RawMessage(`null`)}}}, "action.publish.data"},
		{"rpc without device", protocol.ScheduleSpec{Name: "a", Cron: "@daily", Action: protocol.ScheduleAction{RPC: &protocol.ScheduleRPC{User: "u", Method: "m"}}}, "action.rpc.device"},
		{"rpc params not an object", protocol.ScheduleSpec{Name: "a", Cron: "@daily", Action: protocol.ScheduleAction{RPC: &protocol.ScheduleRPC{User: "u", Device: "d", Method: "m", Params: json.RawMessage(`[1]`)}}}, "action.rpc.params"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newJob(tc.spec, sourceAPI, time.Time{}, checks{})
			pe, ok := err.(*protocol.Error)
			if !ok || pe.Code != protocol.CodeBadRequest || pe.Details["field"] != tc.field {
				t.Fatalf("got %v, want bad_request on %s", err, tc.field)
			}
		})
	}
}

// node is one server's scheduler with its own hub, over a shared store.
type node struct {
	hub   *hub.Hub
	sched *Scheduler
	reg   *prometheus.Registry
	stop  func()
}

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "j.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// startNode starts a hub and a scheduler running cfg; stop ends both.
func startNode(t *testing.T, id string, db *store.DB, leases Leases, cfg Config) *node {
	t.Helper()
	return startNodeWith(t, id, db, leases, cfg, nil)
}

// startNodeWith is startNode with the backend proxy's calls served by
// backends.
func startNodeWith(t *testing.T, id string, db *store.DB, leases Leases, cfg Config, backends Backends) *node {
	t.Helper()
	h, err := hub.New(hub.Config{NodeID: id, Transport: "portable",
		Namespaces: []hub.NamespaceConfig{{Pattern: "public:{name}", Subscribe: []string{"any"}, Publish: []string{"any"}, HistorySize: 100}}},
		hub.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{Hub: h, Store: db, Leases: leases, Registerer: reg, Backends: backends})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return &node{hub: h, sched: s, reg: reg, stop: func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = h.Close()
	}}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue metric
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func tickJob(name, cron, topic string) JobConfig {
	return JobConfig{Name: name, Cron: cron, Publish: &PublishConfig{Topic: topic, Data: map[string]any{"job": name}}}
}

// TestTicksRunOnceAcrossNodes: two nodes with the same configured job and
// one lease store: each tick runs once, on one of them, at its exact time;
// the history has every run.
func TestTicksRunOnceAcrossNodes(t *testing.T) {
	db := openStore(t)
	defer db.Close()
	synctest.Test(t, func(t *testing.T) {
		leases := &MemoryLeases{}
		cfg := Config{Jobs: []JobConfig{tickJob("every10s", "*/10 * * * * *", "public:ticks")}}
		a := startNode(t, "n-a", db, leases, cfg)
		b := startNode(t, "n-b", db, leases, cfg)
		// synctest's clock starts at 2000-01-01 00:00:00 UTC: ticks at 10,
		// 20, ... 60 s.
		start := time.Now()
		time.Sleep(65 * time.Second)
		synctest.Wait()
		defer b.stop()
		defer a.stop()

		runs, err := db.ScheduleRuns(context.Background(), "every10s", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 6 {
			t.Fatalf("%d runs, want 6 (one per tick)", len(runs))
		}
		for i, r := range runs {
			want := start.Add(time.Duration(60-10*i) * time.Second)
			if !r.Tick.Equal(want) || !r.StartedAt.Equal(want) || !r.OK || r.Trigger != triggerSchedule {
				t.Errorf("run %d: %+v, want an ok scheduled run at %s", i, r, want)
			}
		}
		// Each node published the ticks it ran to its own hub.
		var published uint64
		for _, n := range []*node{a, b} {
			pos, err := n.hub.Position(context.Background(), "public:ticks")
			if err != nil {
				t.Fatal(err)
			}
			published += pos.Offset
		}
		if published != 6 {
			t.Errorf("publications on both nodes: %d, want 6", published)
		}
		ranA := counter(t, a.reg, "junction_schedule_runs_total", "trigger", "schedule", "outcome", "ok")
		ranB := counter(t, b.reg, "junction_schedule_runs_total", "trigger", "schedule", "outcome", "ok")
		lostA := counter(t, a.reg, "junction_schedule_ticks_skipped_total", "reason", "lease_taken")
		lostB := counter(t, b.reg, "junction_schedule_ticks_skipped_total", "reason", "lease_taken")
		if ranA+ranB != 6 || lostA+lostB != 6 || ranA != lostB || ranB != lostA {
			t.Errorf("runs a=%v b=%v, lost a=%v b=%v: want 6 runs and 6 ticks lost in all, mirrored", ranA, ranB, lostA, lostB)
		}
	})
}

// TestAPIJobsAndReload: a job created through one node's API runs there at
// once and on the other node after its reload; deleting it stops it.
func TestAPIJobsAndReload(t *testing.T) {
	db := openStore(t)
	defer db.Close()
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{Reload: 30 * time.Second, Jobs: []JobConfig{tickJob("configured", "@daily", "public:c")}}
		a := startNode(t, "n-a", db, &MemoryLeases{}, cfg) // separate leases: each node runs every tick
		b := startNode(t, "n-b", db, &MemoryLeases{}, cfg)
		defer b.stop()
		defer a.stop()
		ctx := context.Background()
		spec := protocol.ScheduleSpec{Name: "minutely", Cron: "0 * * * * *", TimeZone: "Europe/Paris",
			Action: protocol.ScheduleAction{Publish: &protocol.SchedulePublish{Topic: "public:m", Data: json.RawMessage(`{"n": 1}`)}}}
		got, err := a.sched.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if got.Source != sourceAPI || got.TimeZone != "Europe/Paris" || !got.NextRunAt.Equal(time.Date(2000, 1, 1, 0, 1, 0, 0, time.UTC)) ||
			string(got.Action.Publish.Data) != `{"n":1}` {
			t.Fatalf("created %+v", got)
		}
		if _, err := a.sched.Create(ctx, spec); protocol.AsError(err).Code != protocol.CodeConflict {
			t.Fatalf("create twice: %v, want conflict", err)
		}
		spec.Name = "configured"
		if _, err := a.sched.Create(ctx, spec); protocol.AsError(err).Code != protocol.CodeConflict {
			t.Fatalf("create over a configured job: %v, want conflict", err)
		}
		if _, err := a.sched.Delete(ctx, "configured"); protocol.AsError(err).Code != protocol.CodeConflict {
			t.Fatalf("delete a configured job: %v, want conflict", err)
		}
		time.Sleep(61 * time.Second) // ticks at 60 s; b reloaded at 30 s
		synctest.Wait()
		for _, n := range []*node{a, b} {
			pos, _ := n.hub.Position(ctx, "public:m")
			if pos.Offset != 1 {
				t.Errorf("%s published %d times, want 1 (b saw the job at its reload)", n.hub.NodeID(), pos.Offset)
			}
		}
		list, err := b.sched.List(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "configured" || list[1].Name != "minutely" {
			t.Fatalf("b's list: %+v, %v", list, err)
		}
		if _, err := b.sched.Delete(ctx, "minutely"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sched.Get(ctx, "minutely"); protocol.AsError(err).Code != protocol.CodeNotFound {
			t.Fatalf("get after delete: %v, want not_found", err)
		}
		time.Sleep(2 * time.Minute) // a sees the deletion at its next reload, before the next tick
		synctest.Wait()
		for _, n := range []*node{a, b} {
			pos, _ := n.hub.Position(ctx, "public:m")
			if pos.Offset != 1 {
				t.Errorf("%s published %d times after the delete, want still 1", n.hub.NodeID(), pos.Offset)
			}
		}
	})
}

// TestRunNowAndBusy: a manual run is recorded with its result; a tick that
// comes while the job runs is skipped, not queued.
func TestRunNowAndBusy(t *testing.T) {
	db := openStore(t)
	defer db.Close()
	synctest.Test(t, func(t *testing.T) {
		n := startNode(t, "n-a", db, &MemoryLeases{}, Config{Jobs: []JobConfig{tickJob("j", "*/5 * * * * *", "public:j")}})
		defer n.stop()
		ctx := context.Background()
		run, err := n.sched.RunNow(ctx, "j")
		if err != nil {
			t.Fatal(err)
		}
		if !run.OK || run.Trigger != triggerManual || !run.Tick.IsZero() || run.Node != "n-a" || run.ID == "" ||
			!strings.Contains(string(run.Result), `"offset":1`) {
			t.Fatalf("manual run %+v", run)
		}
		if _, err := n.sched.RunNow(ctx, "nope"); protocol.AsError(err).Code != protocol.CodeNotFound {
			t.Fatalf("run an unknown job: %v", err)
		}
		// Hold the job's run slot across its tick at 5 s.
		n.sched.mu.Lock()
		j := n.sched.jobs["j"]
		n.sched.mu.Unlock()
		j.busy <- struct{}{}
		time.Sleep(6 * time.Second)
		synctest.Wait()
		<-j.busy
		if got := counter(t, n.reg, "junction_schedule_ticks_skipped_total", "reason", "busy"); got != 1 {
			t.Errorf("ticks skipped busy: %v, want 1", got)
		}
		time.Sleep(5 * time.Second) // the tick at 10 s runs
		synctest.Wait()
		runs, err := n.sched.Runs(ctx, "j", 10)
		if err != nil || len(runs) != 2 || runs[0].Trigger != triggerSchedule || !runs[0].Tick.Equal(time.Date(2000, 1, 1, 0, 0, 10, 0, time.UTC)) {
			t.Fatalf("runs %+v, %v; want the tick at 10 s, then the manual run", runs, err)
		}
	})
}

// TestFailedRunIsRecorded: an action that fails (an RPC call to a device
// that is not there) is a run with its error, not a crash of the loop.
func TestFailedRunIsRecorded(t *testing.T) {
	db := openStore(t)
	defer db.Close()
	synctest.Test(t, func(t *testing.T) {
		n := startNode(t, "n-a", db, &MemoryLeases{}, Config{Jobs: []JobConfig{{Name: "call", Cron: "0 * * * * *",
			RPC: &RPCConfig{User: "u1", Device: "relay-1", Method: "relay.set", Params: map[string]any{"on": true}, TimeoutMs: 2000}}}})
		defer n.stop()
		time.Sleep(70 * time.Second)
		synctest.Wait()
		runs, err := n.sched.Runs(context.Background(), "call", 0)
		if err != nil || len(runs) != 1 {
			t.Fatalf("runs %+v, %v; want 1", runs, err)
		}
		r := runs[0]
		if r.OK || r.Error == nil || r.Error.Code != protocol.CodeUnavailable || r.FinishedAt.Sub(r.StartedAt) > 3*time.Second {
			t.Fatalf("run %+v (error %+v), want unavailable (offline) within the call's timeout", r, r.Error)
		}
		if got := counter(t, n.reg, "junction_schedule_runs_total", "trigger", "schedule", "outcome", "error"); got != 1 {
			t.Errorf("runs{error}: %v, want 1", got)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad cron", Config{Jobs: []JobConfig{tickJob("a", "nope", "public:x")}}, "jobs[0] (a): cron:"},
		{"zone", Config{Jobs: []JobConfig{{Name: "a", Cron: "@daily", TimeZone: "Nowhere/City", Publish: &PublishConfig{Topic: "public:x", Data: 1}}}}, "time_zone:"},
		{"no action", Config{Jobs: []JobConfig{{Name: "a", Cron: "@daily"}}}, "publish, rpc or backend"},
		{"duplicate", Config{Jobs: []JobConfig{tickJob("a", "@daily", "public:x"), tickJob("a", "@hourly", "public:y")}}, "a second job named"},
		{"negative history", Config{History: -1}, "history"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
