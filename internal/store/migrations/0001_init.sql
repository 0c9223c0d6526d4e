-- Junction schema v1. Shared by SQLite and PostgreSQL; {{bytes}} becomes
-- BLOB or BYTEA. Times are BIGINT Unix microseconds UTC; 0 means "never".
-- Encrypted fields are opaque bytes the server never decrypts.

CREATE TABLE accounts (
	id           TEXT PRIMARY KEY,
	public_key   {{bytes}} NOT NULL UNIQUE,
	-- update_seq is the last update sequence number given out; bumped with
	-- UPDATE ... RETURNING inside each writing transaction (the row lock
	-- serializes writers of one account). Updates with seq <= update_floor
	-- have been pruned.
	update_seq   BIGINT NOT NULL DEFAULT 0,
	update_floor BIGINT NOT NULL DEFAULT 0,
	created_at   BIGINT NOT NULL
);

CREATE TABLE devices (
	id           TEXT PRIMARY KEY,
	account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	kind         TEXT NOT NULL,
	name         TEXT NOT NULL,
	public_key   {{bytes}},
	push_token   TEXT NOT NULL DEFAULT '',
	version      BIGINT NOT NULL,
	created_at   BIGINT NOT NULL,
	last_seen_at BIGINT NOT NULL DEFAULT 0,
	revoked_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_account ON devices (account_id, id);

-- Refresh tokens: only the SHA-256 of the token is stored. Rotation keeps
-- the family; presenting a used token revokes the whole family.
CREATE TABLE refresh_tokens (
	hash       {{bytes}} PRIMARY KEY,
	family_id  TEXT NOT NULL,
	account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	device_id  TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	session_id TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT NOT NULL DEFAULT 0,
	revoked_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE pairing_codes (
	hash              {{bytes}} PRIMARY KEY,
	account_id        TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	created_by_device TEXT NOT NULL,
	created_at        BIGINT NOT NULL,
	expires_at        BIGINT NOT NULL,
	used_at           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX pairing_codes_expires ON pairing_codes (expires_at);

-- Versioned encrypted objects: each encrypted field has its own version,
-- starting at 1 and bumped by one on every accepted update.
CREATE TABLE sessions (
	id                  TEXT PRIMARY KEY,
	account_id          TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	metadata            {{bytes}} NOT NULL,
	metadata_version    BIGINT NOT NULL,
	agent_state         {{bytes}} NOT NULL,
	agent_state_version BIGINT NOT NULL,
	-- msg_seq is the last message seq given out in this session.
	msg_seq             BIGINT NOT NULL DEFAULT 0,
	created_at          BIGINT NOT NULL,
	updated_at          BIGINT NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id, id);

CREATE TABLE machines (
	id                   TEXT PRIMARY KEY,
	account_id           TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	metadata             {{bytes}} NOT NULL,
	metadata_version     BIGINT NOT NULL,
	daemon_state         {{bytes}} NOT NULL,
	daemon_state_version BIGINT NOT NULL,
	created_at           BIGINT NOT NULL,
	updated_at           BIGINT NOT NULL
);
CREATE INDEX machines_account ON machines (account_id, id);

CREATE TABLE artifacts (
	id             TEXT PRIMARY KEY,
	account_id     TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	header         {{bytes}} NOT NULL,
	header_version BIGINT NOT NULL,
	body           {{bytes}} NOT NULL,
	body_version   BIGINT NOT NULL,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL
);
CREATE INDEX artifacts_account ON artifacts (account_id, id);

CREATE TABLE messages (
	id         TEXT PRIMARY KEY,
	session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
	seq        BIGINT NOT NULL,
	-- local_id is the client's id for deduplication; NULL when absent.
	local_id   TEXT,
	body       {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (session_id, seq)
);
CREATE UNIQUE INDEX messages_local_id ON messages (session_id, local_id) WHERE local_id IS NOT NULL;

-- The per-account sync log. body is a JSON document describing the change.
CREATE TABLE updates (
	account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	seq        BIGINT NOT NULL,
	kind       TEXT NOT NULL,
	object_id  TEXT NOT NULL,
	version    BIGINT NOT NULL,
	body       {{bytes}} NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (account_id, seq)
);
CREATE INDEX updates_created ON updates (created_at);

-- Idempotency records: finished_at = 0 while the first request runs.
CREATE TABLE idempotency (
	principal   TEXT NOT NULL,
	idem_key    TEXT NOT NULL,
	status      BIGINT NOT NULL DEFAULT 0,
	body        {{bytes}},
	created_at  BIGINT NOT NULL,
	finished_at BIGINT NOT NULL DEFAULT 0,
	expires_at  BIGINT NOT NULL,
	PRIMARY KEY (principal, idem_key)
);
CREATE INDEX idempotency_expires ON idempotency (expires_at);

CREATE TABLE apps (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	key_id      TEXT NOT NULL UNIQUE,
	key_hash    {{bytes}} NOT NULL,
	webhook_url TEXT NOT NULL DEFAULT '',
	permissions TEXT NOT NULL DEFAULT '{}',
	created_at  BIGINT NOT NULL
);
