-- Scheduled jobs (internal/schedule, docs/scheduler.md). Numbered 0015
-- after the issue that added them, away from the numbers other changes
-- take next; migrations apply by version, whatever their order of arrival.

-- Jobs created through the admin API (jobs of the configuration file are
-- not stored). spec is the job's JSON (protocol.ScheduleSpec), read by the
-- scheduler of every node.
CREATE TABLE schedules (
	name       TEXT PRIMARY KEY,
	spec       {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL
);

-- Run history of every job, the newest kept per job (schedule.history).
-- tick is the scheduled time (0 for a manual run); outcome 'ok' or
-- 'error' with error the protocol error's JSON; result the action's JSON.
CREATE TABLE schedule_runs (
	id          TEXT PRIMARY KEY,
	job         TEXT NOT NULL,
	trig        TEXT NOT NULL,
	tick        BIGINT NOT NULL,
	node        TEXT NOT NULL,
	started_at  BIGINT NOT NULL,
	finished_at BIGINT NOT NULL,
	outcome     TEXT NOT NULL,
	error       {{bytes}},
	result      {{bytes}}
);
CREATE INDEX schedule_runs_job ON schedule_runs (job, started_at, id);
