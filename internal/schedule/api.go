package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// The admin API's operations (web mounts them under
// /api/v1/admin/schedules, scope admin). Each reads the stored jobs first,
// so that a node answers with the jobs another node created or deleted.
// Errors are *protocol.Error, or faults the edge answers as internal.

func callerOf(user string) *auth.Principal { return &auth.Principal{UserID: user} }

// List returns every job by name.
func (s *Scheduler) List(ctx context.Context) ([]protocol.Schedule, error) {
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]protocol.Schedule, 0, len(s.jobs))
	for _, name := range slices.Sorted(maps.Keys(s.jobs)) {
		j := s.jobs[name]
		out = append(out, j.wire(j.next))
	}
	return out, nil
}

// Get returns one job.
func (s *Scheduler) Get(ctx context.Context, name string) (protocol.Schedule, error) {
	j, err := s.lookup(ctx, name)
	if err != nil {
		return protocol.Schedule{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return j.wire(j.next), nil
}

func (s *Scheduler) lookup(ctx context.Context, name string) (*job, error) {
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	j := s.jobs[name]
	s.mu.Unlock()
	if j == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no scheduled job named %q", name)
	}
	return j, nil
}

// Create validates spec, stores it and schedules it on this node at once
// (on the others at their next reload).
func (s *Scheduler) Create(ctx context.Context, spec protocol.ScheduleSpec) (protocol.Schedule, error) {
	if _, err := newJob(spec, sourceAPI, time.Time{}, s.checks()); err != nil {
		return protocol.Schedule{}, err
	}
	if err := s.reload(ctx); err != nil {
		return protocol.Schedule{}, err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	existing := s.jobs[spec.Name]
	api := 0
	for _, j := range s.jobs {
		if j.source == sourceAPI {
			api++
		}
	}
	s.mu.Unlock()
	switch {
	case existing != nil && existing.source == sourceConfig:
		return protocol.Schedule{}, protocol.Errorf(protocol.CodeConflict, "a job named %q is defined in the configuration file", spec.Name)
	case existing != nil:
		return protocol.Schedule{}, protocol.Errorf(protocol.CodeConflict, "a job named %q exists: delete it first", spec.Name)
	case api >= s.cfg.MaxJobs:
		return protocol.Schedule{}, protocol.Errorf(protocol.CodeConflict, "the server already has %d jobs created through the API (schedule.max_jobs)", api)
	}
	// The stored spec is the normalized one (zone filled, JSON compacted).
	j, _ := newJob(spec, sourceAPI, time.Time{}, checks{})
	raw, err := json.Marshal(j.spec)
	if err != nil {
		return protocol.Schedule{}, err
	}
	rec, err := s.deps.Store.CreateSchedule(ctx, j.spec.Name, raw)
	if errors.Is(err, store.ErrDuplicate) {
		return protocol.Schedule{}, protocol.Errorf(protocol.CodeConflict, "a job named %q exists: delete it first", spec.Name)
	}
	if err != nil {
		return protocol.Schedule{}, err
	}
	j.created = rec.CreatedAt
	s.mu.Lock()
	j.next = next(j.sched, j.loc, time.Now())
	s.jobs[j.spec.Name] = j
	s.metrics.jobs.Set(float64(len(s.jobs)))
	out := j.wire(j.next)
	s.mu.Unlock()
	s.poke()
	s.log.Info("scheduled job created", "job", j.spec.Name, "cron", j.spec.Cron, "time_zone", j.spec.TimeZone)
	return out, nil
}

// Delete removes a job created through the API, with its history; a
// configured job cannot be deleted (conflict).
func (s *Scheduler) Delete(ctx context.Context, name string) (protocol.Schedule, error) {
	j, err := s.lookup(ctx, name)
	if err != nil {
		return protocol.Schedule{}, err
	}
	if j.source == sourceConfig {
		return protocol.Schedule{}, protocol.Errorf(protocol.CodeConflict, "job %q is defined in the configuration file: remove it there", name)
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if err := s.deps.Store.DeleteSchedule(ctx, name); errors.Is(err, store.ErrNotFound) {
		return protocol.Schedule{}, protocol.Errorf(protocol.CodeNotFound, "no scheduled job named %q", name)
	} else if err != nil {
		return protocol.Schedule{}, err
	}
	s.mu.Lock()
	if s.jobs[name] == j {
		delete(s.jobs, name)
	}
	s.metrics.jobs.Set(float64(len(s.jobs)))
	out := j.wire(time.Time{})
	s.mu.Unlock()
	s.poke()
	s.log.Info("scheduled job deleted", "job", name)
	return out, nil
}

// RunNow runs a job at once on this node, outside its schedule (no lease:
// an explicit request), and returns the recorded run. It waits while a
// scheduled run of the job is in progress, until ctx ends.
func (s *Scheduler) RunNow(ctx context.Context, name string) (protocol.ScheduleRun, error) {
	j, err := s.lookup(ctx, name)
	if err != nil {
		return protocol.ScheduleRun{}, err
	}
	select {
	case j.busy <- struct{}{}:
		defer func() { <-j.busy }()
	case <-ctx.Done():
		return protocol.ScheduleRun{}, protocol.Errorf(protocol.CodeTimeout, "a run of %q is still in progress", name)
	}
	return s.execute(ctx, j, triggerManual, time.Time{})
}

// Runs returns up to limit of a job's runs, newest first.
func (s *Scheduler) Runs(ctx context.Context, name string, limit int) ([]protocol.ScheduleRun, error) {
	if _, err := s.lookup(ctx, name); err != nil {
		return nil, err
	}
	recs, err := s.deps.Store.ScheduleRuns(ctx, name, limit)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.ScheduleRun, 0, len(recs))
	for _, r := range recs {
		out = append(out, wireRun(r))
	}
	return out, nil
}
