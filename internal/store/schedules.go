package store

import (
	"context"
	"database/sql"

	"fmt"
	"time"
)

// Scheduled jobs created through the admin API, and the run history of
// every job (internal/schedule owns their meaning; here they are rows).

// ScheduleRecord is a stored job: its name and its spec as JSON.
type ScheduleRecord struct {
	Name      string
	Spec      []byte
	CreatedAt time.Time
}

// MaxSchedules bounds Schedules' answer.
const MaxSchedules = 10000

// CreateSchedule stores a job; ErrDuplicate when the name is taken.
func (db *DB) CreateSchedule(ctx context.Context, name string, spec []byte) (ScheduleRecord, error) {
	if name == "" || len(spec) == 0 {
		return ScheduleRecord{}, fmt.Errorf("store: create schedule: name and spec are required: %w", ErrInvalid)
	}
	rec := ScheduleRecord{Name: name, Spec: spec, CreatedAt: db.now().Truncate(time.Microsecond).UTC()}
	err := db.write(ctx, "create schedule", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO schedules (name, spec, created_at) VALUES ($1, $2, $3)`, name, spec, micros(rec.CreatedAt))
		if isUnique(err) {
			return ErrDuplicate
		}
		return err
	})
	return rec, err
}

// Schedules returns the stored jobs by name (at most MaxSchedules).
func (db *DB) Schedules(ctx context.Context) ([]ScheduleRecord, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT name, spec, created_at FROM schedules ORDER BY name LIMIT $1`, MaxSchedules)
	if err != nil {
		return nil, fmt.Errorf("store: schedules: %w", err)
	}
	defer rows.Close()
	var out []ScheduleRecord
	for rows.Next() {
		var r ScheduleRecord
		var created int64
		if err := rows.Scan(&r.Name, &r.Spec, &created); err != nil {
			return nil, fmt.Errorf("store: schedules: %w", err)
		}
		r.CreatedAt = fromMicros(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: schedules: %w", err)
	}
	return out, nil
}

// DeleteSchedule deletes a stored job and its run history; ErrNotFound
// when there is no such stored job.
func (db *DB) DeleteSchedule(ctx context.Context, name string) error {
	return db.write(ctx, "delete schedule", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM schedules WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM schedule_runs WHERE job = $1`, name)
		return err
	})
}

// ScheduleRun is one run of a job. Tick is zero for a manual run; Error
// and Result are JSON (nil when absent).
type ScheduleRun struct {
	ID         string
	Job        string
	Trigger    string
	Tick       time.Time
	Node       string
	StartedAt  time.Time
	FinishedAt time.Time
	OK         bool
	Error      []byte
	Result     []byte
}

// RecordScheduleRun stores run (its ID is set here) and keeps only the
// newest keep runs of its job (keep >= 1).
func (db *DB) RecordScheduleRun(ctx context.Context, run ScheduleRun, keep int) (ScheduleRun, error) {
	if run.Job == "" || keep < 1 {
		return ScheduleRun{}, fmt.Errorf("store: record schedule run: job and keep >= 1 are required: %w", ErrInvalid)
	}
	run.ID = newID(run.StartedAt)
	outcome := "error"
	if run.OK {
		outcome = "ok"
	}
	err := db.write(ctx, "record schedule run", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schedule_runs (id, job, trig, tick, node, started_at, finished_at, outcome, error, result)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			run.ID, run.Job, run.Trigger, micros(run.Tick), run.Node, micros(run.StartedAt), micros(run.FinishedAt), outcome,
			nullBytes(run.Error), nullBytes(run.Result)); err != nil {
			return err
		}
		// The history is bounded per job: the insert trims what fell off.
		_, err := tx.ExecContext(ctx, `DELETE FROM schedule_runs WHERE job = $1 AND id NOT IN (
			SELECT id FROM schedule_runs WHERE job = $1 ORDER BY started_at DESC, id DESC LIMIT $2)`, run.Job, keep)
		return err
	})
	return run, err
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// ScheduleRuns returns up to limit of job's runs, newest first (limit
// 1..MaxPageLimit; <= 0 means MaxPageLimit).
func (db *DB) ScheduleRuns(ctx context.Context, job string, limit int) ([]ScheduleRun, error) {
	if limit <= 0 || limit > MaxPageLimit {
		limit = MaxPageLimit
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, job, trig, tick, node, started_at, finished_at, outcome, error, result
		FROM schedule_runs WHERE job = $1 ORDER BY started_at DESC, id DESC LIMIT $2`, job, limit)
	if err != nil {
		return nil, fmt.Errorf("store: schedule runs: %w", err)
	}
	defer rows.Close()
	var out []ScheduleRun
	for rows.Next() {
		var r ScheduleRun
		var tick, started, finished int64
		var outcome string
		if err := rows.Scan(&r.ID, &r.Job, &r.Trigger, &tick, &r.Node, &started, &finished, &outcome, &r.Error, &r.Result); err != nil {
			return nil, fmt.Errorf("store: schedule runs: %w", err)
		}
		r.Tick, r.StartedAt, r.FinishedAt, r.OK = fromMicros(tick), fromMicros(started), fromMicros(finished), outcome == "ok"
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: schedule runs: %w", err)
	}
	return out, nil
}
