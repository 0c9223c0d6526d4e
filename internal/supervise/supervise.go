// Package supervise runs the server's background services (the scheduler,
// store pruning, the authentication-failure log, ...) under one
// supervisor. A service is a function that runs until its context ends. One
// that returns early, with an error or without, or panics, is logged and
// started again after a backoff that doubles up to a maximum; it never takes
// the server down. Each service's state is visible (Status, for /readyz)
// and counted (junction_service_up, junction_service_restarts_total).
// Stop ends the services one at a time in reverse start order, within a
// deadline.
//
// Time is the time package's: tests run the supervisor inside a
// testing/synctest bubble, whose fake clock makes backoffs instant and
// their order deterministic.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes restarts. The zero value of every field selects its default.
type Config struct {
	// MinBackoff is the wait before the first restart of a failed service;
	// default 1 s.
	MinBackoff time.Duration `yaml:"min_backoff" doc:"wait before restarting a failed background service the first time; doubled at each failure in a row (default 1s)"`
	// MaxBackoff caps the doubling; default 1 min.
	MaxBackoff time.Duration `yaml:"max_backoff" doc:"longest wait between restarts of a failing background service (default 1m)"`
	// ResetAfter: a service that ran this long before failing is restarted
	// after MinBackoff again; default MaxBackoff.
	ResetAfter time.Duration `yaml:"reset_after" doc:"a background service that ran this long before failing is restarted after min_backoff again (default: max_backoff)"`
	// StopTimeout bounds Stop when its context has no earlier deadline;
	// default 10 s.
	StopTimeout time.Duration `yaml:"stop_timeout" doc:"how long shutdown waits for the background services to stop (default 10s)"`
}

func (c *Config) setDefaults() {
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Minute
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.ResetAfter <= 0 {
		c.ResetAfter = c.MaxBackoff
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
}

// Validate refuses negative durations.
func (c Config) Validate() error {
	for name, d := range map[string]time.Duration{"min_backoff": c.MinBackoff, "max_backoff": c.MaxBackoff,
		"reset_after": c.ResetAfter, "stop_timeout": c.StopTimeout} {
		if d < 0 {
			return fmt.Errorf("%s %v: must not be negative", name, d)
		}
	}
	return nil
}

// Service states, as Status reports them.
const (
	StateRunning = "running"
	// StateBackoff: the service failed and waits to be restarted.
	StateBackoff = "backoff"
	StateStopped = "stopped"
)

// Status is one service's state.
type Status struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Restarts counts the failures since the supervisor started it.
	Restarts int `json:"restarts"`
	// LastError is the last failure ("" if none): the error, "panic: ...",
	// or "returned before it was stopped".
	LastError string `json:"lastError,omitempty"`
	// LastFailure is when it last failed (zero if never).
	LastFailure time.Time `json:"lastFailure,omitzero"`
}

// Supervisor runs services. Build it with New; Go starts services; Stop
// ends them. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg      Config       // set once by New
	log      *slog.Logger // set once by New
	up       *prometheus.GaugeVec
	restarts *prometheus.CounterVec

	mu       sync.Mutex
	services []*service // guarded by mu; in start order
	stopping bool       // guarded by mu; set by Stop, refuses Go
}

// service is one supervised function.
type service struct {
	name   string                          // set once
	run    func(ctx context.Context) error // set once
	cancel context.CancelFunc              // set once; ends run's context
	done   chan struct{}                   // closed when the loop returned

	mu     sync.Mutex
	status Status // guarded by mu
}

// Failure reasons, the values of junction_service_restarts_total's reason.
const (
	reasonError = "error"
	reasonPanic = "panic"
	reasonExit  = "exit"
)

// New returns a supervisor with no services. reg receives its metrics
// (nil for none).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Supervisor {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{cfg: cfg, log: log,
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "junction_service_up",
			Help: "1 while a supervised background service runs, 0 while it waits to be restarted or is stopped.",
		}, []string{"service"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_service_restarts_total",
			Help: "Failures of supervised background services, each followed by a restart, by reason (error, panic, exit).",
		}, []string{"service", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(s.up, s.restarts)
	}
	return s
}

// ErrStopped is returned by Go after Stop began.
var ErrStopped = errors.New("supervise: stopped")

// Go starts run as the service name and keeps it running until Stop. run
// must return when its context ends; its return before that (nil or an
// error) or a panic is a failure: logged, counted and followed by a
// restart after the backoff. Names must be unique.
func (s *Supervisor) Go(name string, run func(ctx context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return ErrStopped
	}
	if slices.ContainsFunc(s.services, func(sv *service) bool { return sv.name == name }) {
		return fmt.Errorf("supervise: service %q already runs", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sv := &service{name: name, run: run, cancel: cancel, done: make(chan struct{}), status: Status{Name: name, State: StateRunning}}
	s.services = append(s.services, sv)
	for _, r := range []string{reasonError, reasonPanic, reasonExit} {
		s.restarts.WithLabelValues(name, r) // exported at zero from the start
	}
	go s.loop(ctx, sv)
	return nil
}

// loop runs sv until ctx ends, restarting it after each failure.
func (s *Supervisor) loop(ctx context.Context, sv *service) {
	defer close(sv.done)
	up := s.up.WithLabelValues(sv.name)
	backoff := s.cfg.MinBackoff
	for {
		sv.setState(StateRunning)
		up.Set(1)
		started := time.Now()
		reason, err := call(ctx, sv.run)
		up.Set(0)
		if ctx.Err() != nil {
			sv.setState(StateStopped)
			return
		}
		if time.Since(started) >= s.cfg.ResetAfter {
			backoff = s.cfg.MinBackoff
		}
		s.restarts.WithLabelValues(sv.name, reason).Inc()
		sv.mu.Lock()
		sv.status.State = StateBackoff
		sv.status.Restarts++
		sv.status.LastError = err.Error()
		sv.status.LastFailure = time.Now()
		restarts := sv.status.Restarts
		sv.mu.Unlock()
		s.log.Error("background service failed; restarting", "service", sv.name, "reason", reason, "err", err,
			"restarts", restarts, "in", backoff.String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			sv.setState(StateStopped)
			return
		case <-t.C:
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// call runs run once, turning a panic into an error (with its stack in the
// message, for the log) and an early return into one.
func call(ctx context.Context, run func(ctx context.Context) error) (reason string, err error) {
	defer func() {
		if v := recover(); v != nil {
			reason, err = reasonPanic, fmt.Errorf("panic: %v\n%s", v, debug.Stack())
		}
	}()
	if err := run(ctx); err != nil {
		return reasonError, err
	}
	return reasonExit, errors.New("returned before it was stopped")
}

func (sv *service) setState(state string) {
	sv.mu.Lock()
	sv.status.State = state
	sv.mu.Unlock()
}

// Status returns every service's state, in start order. A panic's stack is
// not included (it is in the log): LastError keeps its first line.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	svs := slices.Clone(s.services)
	s.mu.Unlock()
	out := make([]Status, 0, len(svs))
	for _, sv := range svs {
		sv.mu.Lock()
		st := sv.status
		sv.mu.Unlock()
		st.LastError, _, _ = strings.Cut(st.LastError, "\n")
		out = append(out, st)
	}
	return out
}

// Stop ends the services in reverse start order, each one's context
// cancelled only after the one started after it returned, so that a
// service may rely on those started before it until it stops. It waits
// until ctx ends or Config.StopTimeout passes, whichever comes first; then
// it cancels the rest at once, without waiting for them, and returns an
// error naming the service it was waiting for. Go fails after Stop. Safe to
// call twice.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	svs := slices.Clone(s.services)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StopTimeout)
	defer cancel()
	for i := len(svs) - 1; i >= 0; i-- {
		sv := svs[i]
		sv.cancel()
		select {
		case <-sv.done:
			continue
		case <-ctx.Done():
		}
		var rest []string
		for _, r := range svs[:i] {
			r.cancel()
			rest = append(rest, r.name)
		}
		slices.Reverse(rest)
		return fmt.Errorf("supervise: stop: %q did not return in time; cancelled %v without waiting", sv.name, rest)
	}
	return nil
}
