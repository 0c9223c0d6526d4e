-- App session recovery (internal/apps/recovery.go, docs/apps.md
-- "Recovery"). Numbered 0016, the next after 0015; migrations apply by
-- version, whatever their order of arrival.
--
-- due_at is the session's next timer, Unix microseconds (0: none): the
-- connect deadline of a starting session, the end of a transport_down
-- session's grace, the next resurrection attempt (or its connect deadline)
-- of a resurrecting session, the device_gone deadline of a dormant one.
-- Every node's recovery loop reads the due ones from here, so that timers
-- survive a restart. recover_since starts the resurrection budget;
-- attempts counts the session.start webhooks sent since.
ALTER TABLE app_sessions ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE app_sessions ADD COLUMN recover_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE app_sessions ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX app_sessions_due ON app_sessions (due_at);
