// Package schedule runs scheduled jobs: cron expressions read in a time
// zone, each tick running an action (a channel publication, an RPC call to
// a device, a call to a backend of the proxy) at most once across the
// nodes that share the jobs, with every run kept in a bounded history.
// Jobs come from the configuration file and from the admin API (stored, so
// that every node and every restart sees them). Scheduler.Run is the loop,
// run under the server's supervisor.
//
// Time is the time package's: tests run the loop in a testing/synctest
// bubble, whose fake clock makes ticks instant and their order exact.
package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Config configures the scheduler. The zero value of every field selects
// its default.
type Config struct {
	// Jobs are the jobs of the configuration file (read-only through the
	// API). Every node of a cluster must have the same.
	Jobs []JobConfig `yaml:"jobs" doc:"scheduled jobs (config file only): list of {name, cron, time_zone, publish: {topic, data} | rpc: {user, device, method, params, timeout_ms} | backend: {backend, user, method, params}}"`
	// History is how many runs are kept per job; default 100.
	History int `yaml:"history" doc:"runs kept per scheduled job, the newest (default 100)"`
	// MaxJobs bounds the jobs created through the API; default 1000.
	MaxJobs int `yaml:"max_jobs" doc:"most scheduled jobs the admin API may create (default 1000)"`
	// Reload is how often the stored jobs are read again, to see those
	// another node created or deleted; default 30 s.
	Reload time.Duration `yaml:"reload" doc:"how often a node reads the jobs stored through the admin API again, to see other nodes' changes (default 30s)"`
	// LeaseTTL is how long a tick's lease is held; it must outlast the
	// clock skew between nodes. Default 10 min.
	LeaseTTL time.Duration `yaml:"lease_ttl" doc:"how long a tick's lease is held, longer than the clock skew between nodes (default 10m)"`
}

// JobConfig is a job of the configuration file.
type JobConfig struct {
	Name     string         `yaml:"name"`
	Cron     string         `yaml:"cron"`
	TimeZone string         `yaml:"time_zone"`
	Publish  *PublishConfig `yaml:"publish"`
	RPC      *RPCConfig     `yaml:"rpc"`
	Backend  *BackendCall   `yaml:"backend"`
}

// PublishConfig is a publication action in the configuration file.
type PublishConfig struct {
	Topic string `yaml:"topic"`
	Data  any    `yaml:"data"`
}

// RPCConfig is an RPC action in the configuration file.
type RPCConfig struct {
	User      string         `yaml:"user"`
	Device    string         `yaml:"device"`
	Method    string         `yaml:"method"`
	Params    map[string]any `yaml:"params"`
	TimeoutMs int64          `yaml:"timeout_ms"`
}

// BackendCall is a backend call action in the configuration file: Method
// on Backend (a backend of proxy.backends) as User.
type BackendCall struct {
	Backend string         `yaml:"backend"`
	User    string         `yaml:"user"`
	Method  string         `yaml:"method"`
	Params  map[string]any `yaml:"params"`
}

func (c *Config) setDefaults() {
	if c.History <= 0 {
		c.History = 100
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = 1000
	}
	if c.Reload <= 0 {
		c.Reload = 30 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Minute
	}
}

// spec converts a configured job to its spec.
func (jc JobConfig) spec() (protocol.ScheduleSpec, error) {
	s := protocol.ScheduleSpec{Name: jc.Name, Cron: jc.Cron, TimeZone: jc.TimeZone}
	if jc.Publish != nil {
		data, err := json.Marshal(jc.Publish.Data)
		if err != nil {
			return s, fmt.Errorf("publish.data: %w", err)
		}
		s.Action.Publish = &protocol.SchedulePublish{Topic: jc.Publish.Topic, Data: data}
	}
	if jc.RPC != nil {
		r := &protocol.ScheduleRPC{User: jc.RPC.User, Device: jc.RPC.Device, Method: jc.RPC.Method, TimeoutMs: jc.RPC.TimeoutMs}
		if jc.RPC.Params != nil {
			params, err := json.Marshal(jc.RPC.Params)
			if err != nil {
				return s, fmt.Errorf("rpc.params: %w", err)
			}
			r.Params = params
		}
		s.Action.RPC = r
	}
	if jc.Backend != nil {
		b := &protocol.ScheduleBackend{Backend: jc.Backend.Backend, User: jc.Backend.User, Method: jc.Backend.Method}
		if jc.Backend.Params != nil {
			params, err := json.Marshal(jc.Backend.Params)
			if err != nil {
				return s, fmt.Errorf("backend.params: %w", err)
			}
			b.Params = params
		}
		s.Action.Backend = b
	}
	return s, nil
}

// Validate checks the settings and the configured jobs (all but their
// topics, which need the hub's namespaces: New checks those).
func (c Config) Validate() error {
	for name, v := range map[string]int{"history": c.History, "max_jobs": c.MaxJobs} {
		if v < 0 {
			return fmt.Errorf("%s %d: must not be negative", name, v)
		}
	}
	if c.Reload < 0 || c.LeaseTTL < 0 {
		return errors.New("reload and lease_ttl must not be negative")
	}
	seen := map[string]bool{}
	for i, jc := range c.Jobs {
		if err := jc.validate(checks{}); err != nil {
			return fmt.Errorf("jobs[%d] (%s): %w", i, jc.Name, err)
		}
		if seen[jc.Name] {
			return fmt.Errorf("jobs[%d]: a second job named %q", i, jc.Name)
		}
		seen[jc.Name] = true
	}
	return nil
}

func (jc JobConfig) validate(chk checks) error {
	s, err := jc.spec()
	if err == nil {
		_, err = newJob(s, sourceConfig, time.Time{}, chk)
	}
	if pe, ok := errors.AsType[*protocol.Error](err); ok {
		field, _ := pe.Details["field"].(string)
		return fmt.Errorf("%s: %s", snake(field), strings.TrimPrefix(pe.Message, field+": "))
	}
	return err
}

// snake turns a spec's field path into the configuration file's keys.
func snake(field string) string {
	switch field {
	case "timeZone":
		return "time_zone"
	case "action":
		return "publish, rpc or backend"
	case "action.rpc.timeoutMs":
		return "rpc.timeout_ms"
	}
	if len(field) > len("action.") && field[:len("action.")] == "action." {
		return field[len("action."):]
	}
	return field
}

// Deps are the scheduler's collaborators.
type Deps struct {
	// Hub publishes and relays RPC calls; its node id names the runs.
	Hub *hub.Hub
	// Store keeps the API's jobs and every job's history.
	Store *store.DB
	// Leases decide which node runs a tick; default: MemoryLeases (one
	// node).
	Leases Leases
	// Backends serves the backend call action (the backend proxy); nil:
	// jobs with that action are refused.
	Backends   Backends
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Backends calls the backends of the proxy configuration (proxy.Proxy
// implements it): HasBackend reports whether the running configuration
// declares one; CallBackend sends method and params to it as caller (the
// job's name and an idempotency key, empty for manual runs, go with the
// request) and returns its result or its error (*protocol.Error).
type Backends interface {
	HasBackend(name string) bool
	CallBackend(ctx context.Context, backend string, caller *auth.Principal, method string, params json.RawMessage, job, idem string) (json.RawMessage, error)
}

// Scheduler runs the jobs. Build it with New; Run is its loop; the API
// methods (List, Get, Create, Delete, RunNow, Runs) serve the admin API.
type Scheduler struct {
	cfg     Config // set once by New
	deps    Deps   // set once by New
	log     *slog.Logger
	metrics *metrics
	wake    chan struct{} // one slot: the jobs changed, the loop recomputes its wait

	mu   sync.Mutex
	jobs map[string]*job // guarded by mu: config and API jobs by name

	// reloadMu serializes reloads (the loop's and the API's) and the API's
	// changes, so that a reload that read the store before a change does
	// not undo it in memory. Taken before mu; held across store calls.
	reloadMu sync.Mutex
}

// New builds the scheduler with the configured jobs (their topics checked
// against the hub's namespaces). It starts nothing: Run is the loop.
func New(cfg Config, deps Deps) (*Scheduler, error) {
	if deps.Hub == nil || deps.Store == nil {
		return nil, errors.New("schedule: hub and store are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	cfg.setDefaults()
	if deps.Leases == nil {
		deps.Leases = &MemoryLeases{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{cfg: cfg, deps: deps, log: deps.Logger, metrics: newMetrics(deps.Registerer),
		wake: make(chan struct{}, 1), jobs: map[string]*job{}}
	now := time.Now()
	for i, jc := range cfg.Jobs {
		if err := jc.validate(s.checks()); err != nil {
			return nil, fmt.Errorf("schedule: jobs[%d] (%s): %w", i, jc.Name, err)
		}
		spec, _ := jc.spec()
		j, _ := newJob(spec, sourceConfig, time.Time{}, checks{})
		j.next = next(j.sched, j.loc, now)
		s.jobs[j.spec.Name] = j
	}
	s.metrics.jobs.Set(float64(len(s.jobs)))
	return s, nil
}

// checks returns the checks of a new job against the running hub and
// proxy.
func (s *Scheduler) checks() checks {
	c := checks{topic: s.deps.Hub.CheckTopic, backend: func(string) bool { return false }}
	if s.deps.Backends != nil {
		c.backend = s.deps.Backends.HasBackend
	}
	return c
}

// Run is the scheduler's loop: it reads the stored jobs, then waits for the
// next tick of any job, asks for the tick's lease and runs the job when it
// gets it. Ticks are not caught up: they count from the node's start, and
// a loop that wakes late runs a job once, for the first tick it missed
// (due). A job whose
// previous run has not finished skips the tick. Run returns nil when ctx
// ends, after the runs in progress returned, and an error when the stored
// jobs cannot be read (the supervisor restarts it).
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if err := s.reload(ctx); err != nil {
		return err
	}
	lastReload := time.Now()
	for {
		now := time.Now()
		wait := s.cfg.Reload - now.Sub(lastReload)
		if n, ok := s.earliest(); ok {
			wait = min(wait, n.Sub(now))
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
		now = time.Now()
		if now.Sub(lastReload) >= s.cfg.Reload {
			if err := s.reload(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			lastReload = now
		}
		for _, d := range s.due(now) {
			wg.Go(func() { s.fire(ctx, d.job, d.tick) })
		}
	}
}

// earliest returns the earliest next tick of all jobs.
func (s *Scheduler) earliest() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first time.Time
	for _, j := range s.jobs {
		if !j.next.IsZero() && (first.IsZero() || j.next.Before(first)) {
			first = j.next
		}
	}
	return first, !first.IsZero()
}

type dueTick struct {
	job  *job
	tick time.Time
}

// due returns the jobs whose next tick has come, each with that tick, and
// moves their next tick past now.
func (s *Scheduler) due(now time.Time) []dueTick {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dueTick
	for _, name := range slices.Sorted(maps.Keys(s.jobs)) {
		j := s.jobs[name]
		if j.next.IsZero() || j.next.After(now) {
			continue
		}
		out = append(out, dueTick{j, j.next})
		j.next = next(j.sched, j.loc, now)
	}
	return out
}

// poke tells the loop that the jobs changed.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// reload reads the stored jobs: new ones are added, deleted ones removed,
// the others keep their next tick. A stored job this node cannot read (a
// zone its build lacks) is logged and left out.
func (s *Scheduler) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	recs, err := s.deps.Store.Schedules(ctx)
	if err != nil {
		return fmt.Errorf("schedule: read the stored jobs: %w", err)
	}
	now := time.Now()
	stored := map[string]*job{}
	for _, r := range recs {
		var spec protocol.ScheduleSpec
		if err := json.Unmarshal(r.Spec, &spec); err != nil {
			s.log.Error("scheduled job unreadable; skipped", "job", r.Name, "err", err)
			continue
		}
		j, err := newJob(spec, sourceAPI, r.CreatedAt, checks{})
		if err != nil {
			s.log.Error("scheduled job invalid on this node; skipped", "job", r.Name, "err", err)
			continue
		}
		stored[r.Name] = j
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for name, j := range s.jobs {
		if j.source != sourceAPI {
			continue
		}
		if nj, ok := stored[name]; !ok || nj.raw != j.raw {
			delete(s.jobs, name)
			changed = true
		}
	}
	for name, j := range stored {
		if _, ok := s.jobs[name]; ok {
			continue // the same job (or a config job of that name, which wins)
		}
		j.next = next(j.sched, j.loc, now)
		s.jobs[name] = j
		changed = true
	}
	s.metrics.jobs.Set(float64(len(s.jobs)))
	if changed {
		s.poke()
	}
	return nil
}

// fire runs j for tick if this node gets the tick's lease.
func (s *Scheduler) fire(ctx context.Context, j *job, tick time.Time) {
	select {
	case j.busy <- struct{}{}:
		defer func() { <-j.busy }()
	default:
		s.metrics.skipped.WithLabelValues("busy").Inc()
		s.log.Warn("scheduled job still running; tick skipped", "job", j.spec.Name, "tick", tick)
		return
	}
	ok, err := s.deps.Leases.Acquire(ctx, tickKey(j.spec.Name, tick), s.deps.Hub.NodeID(), s.cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.skipped.WithLabelValues("lease_error").Inc()
			s.log.Error("scheduled job: lease unavailable; tick skipped", "job", j.spec.Name, "tick", tick, "err", err)
		}
		return
	}
	if !ok {
		s.metrics.skipped.WithLabelValues("lease_taken").Inc()
		return
	}
	s.execute(ctx, j, triggerSchedule, tick)
}

// tickKey names a job's tick: its lease, and the idempotency key of a
// backend call.
func tickKey(job string, tick time.Time) string {
	return "schedule:" + job + ":" + strconv.FormatInt(tick.Unix(), 10)
}

// Run triggers.
const (
	triggerSchedule = "schedule"
	triggerManual   = "manual"
)

// execute runs j's action now and records the run.
func (s *Scheduler) execute(ctx context.Context, j *job, trigger string, tick time.Time) (protocol.ScheduleRun, error) {
	start := time.Now()
	res, err := s.act(ctx, j.spec, trigger, tick)
	run := store.ScheduleRun{Job: j.spec.Name, Trigger: trigger, Tick: tick, Node: s.deps.Hub.NodeID(),
		StartedAt: start, FinishedAt: time.Now(), OK: err == nil, Result: res}
	outcome := "ok"
	if err != nil {
		outcome = "error"
		pe := protocol.AsError(err)
		if _, isProtocol := errors.AsType[*protocol.Error](err); !isProtocol {
			s.log.Error("scheduled job failed", "job", j.spec.Name, "err", err)
		} else {
			s.log.Warn("scheduled job failed", "job", j.spec.Name, "code", pe.Code, "message", pe.Message)
		}
		run.Error, _ = json.Marshal(pe)
	}
	s.metrics.runs.WithLabelValues(trigger, outcome).Inc()
	// The run happened: it is recorded even when ctx ended meanwhile.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	rec, rerr := s.deps.Store.RecordScheduleRun(rctx, run, s.cfg.History)
	if rerr != nil {
		s.log.Error("scheduled job: record the run", "job", j.spec.Name, "err", rerr)
		return wireRun(run), rerr
	}
	return wireRun(rec), nil
}

// act runs an action. A new kind of action adds a case here (and in
// checkAction).
func (s *Scheduler) act(ctx context.Context, spec protocol.ScheduleSpec, trigger string, tick time.Time) (json.RawMessage, error) {
	a := spec.Action
	switch {
	case a.Publish != nil:
		pos, err := s.deps.Hub.Publish(ctx, a.Publish.Topic, a.Publish.Data)
		if err != nil {
			return nil, err
		}
		return json.Marshal(protocol.PublishResult{Epoch: pos.Epoch, Offset: pos.Offset})
	case a.RPC != nil:
		r := a.RPC
		caller := callerOf(r.User)
		return s.deps.Hub.CallDevice(ctx, caller, r.Device, r.Method, r.Params, time.Duration(r.TimeoutMs)*time.Millisecond)
	case a.Backend != nil:
		b := a.Backend
		if s.deps.Backends == nil {
			return nil, protocol.Errorf(protocol.CodeNotFound, "proxy backend %q is not configured (proxy.backends)", b.Backend)
		}
		// A tick's key is the same on every node (its lease's), so a
		// backend can drop a repeat; a manual run has none.
		idem := ""
		if trigger == triggerSchedule {
			idem = tickKey(spec.Name, tick)
		}
		return s.deps.Backends.CallBackend(ctx, b.Backend, callerOf(b.User), b.Method, b.Params, spec.Name, idem)
	}
	return nil, protocol.Errorf(protocol.CodeBadRequest, "the job has no action")
}

func wireRun(r store.ScheduleRun) protocol.ScheduleRun {
	out := protocol.ScheduleRun{ID: r.ID, Job: r.Job, Trigger: r.Trigger, Tick: r.Tick, Node: r.Node,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, OK: r.OK}
	if len(r.Result) > 0 {
		out.Result = json.RawMessage(r.Result)
	}
	if len(r.Error) > 0 {
		var pe protocol.Error
		if json.Unmarshal(r.Error, &pe) == nil {
			out.Error = &pe
		}
	}
	return out
}
