-- Apps platform: webhook secrets and app sessions.

-- An app's webhook signing secret, sealed (AES-256-GCM under a server key
-- kept in the data directory: it must be able to sign, so it is encrypted,
-- not hashed). During a rotation the previous secret signs too, until
-- prev_until. internal marks an app whose webhooks may target loopback and
-- private addresses.
CREATE TABLE app_webhooks (
	app_id     TEXT PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
	internal   BIGINT NOT NULL DEFAULT 0,
	sealed     {{bytes}} NOT NULL,
	prev       {{bytes}} NOT NULL,
	prev_until BIGINT NOT NULL DEFAULT 0,
	updated_at BIGINT NOT NULL
);

-- An app session: one app running for one user's device. ticket_hash is
-- SHA-256 of the single-use start ticket (a 256-bit random secret);
-- ticket_used_at is set when the app connects with it. resume_hash is the
-- hex SHA-256 of the latest resume token (apps.hello issues one). stage and error say
-- why a session failed; stop_reason why it stopped. epoch fences owners.
CREATE TABLE app_sessions (
	id                TEXT PRIMARY KEY,
	app_id            TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	user_id           TEXT NOT NULL,
	device_id         TEXT NOT NULL,
	kind              TEXT NOT NULL,
	state             TEXT NOT NULL,
	capabilities      TEXT NOT NULL DEFAULT '[]',
	ticket_hash       {{bytes}} NOT NULL,
	ticket_expires_at BIGINT NOT NULL,
	ticket_used_at    BIGINT NOT NULL DEFAULT 0,
	resume_hash       TEXT NOT NULL DEFAULT '',
	stop_reason       TEXT NOT NULL DEFAULT '',
	stage             TEXT NOT NULL DEFAULT '',
	error             TEXT NOT NULL DEFAULT '',
	node              TEXT NOT NULL DEFAULT '',
	epoch             BIGINT NOT NULL DEFAULT 1,
	created_at        BIGINT NOT NULL,
	updated_at        BIGINT NOT NULL
);
CREATE INDEX app_sessions_device ON app_sessions (device_id, state);
CREATE INDEX app_sessions_app ON app_sessions (app_id, state, id);
