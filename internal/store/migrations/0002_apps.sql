-- Apps platform: registered apps, their API keys and users' installations.
-- Replaces the apps table of 0001 (one key per app, never used).

DROP TABLE apps;

-- id is the app's reverse-DNS name, chosen when it is registered. The list
-- members (scopes, tools, capabilities) and the settings schema are JSON
-- text.
CREATE TABLE apps (
	id              TEXT PRIMARY KEY,
	name            TEXT NOT NULL,
	kind            TEXT NOT NULL,
	webhook_url     TEXT NOT NULL DEFAULT '',
	scopes          TEXT NOT NULL DEFAULT '[]',
	priority        TEXT NOT NULL,
	settings_schema TEXT NOT NULL DEFAULT '',
	tools           TEXT NOT NULL DEFAULT '[]',
	capabilities    TEXT NOT NULL DEFAULT '[]',
	owner           TEXT NOT NULL DEFAULT '',
	created_at      BIGINT NOT NULL,
	updated_at      BIGINT NOT NULL
);

-- API keys: id is the public part of jk_<id>_<secret>; mac is
-- HMAC-SHA256(server pepper, id || 0 || secret), never the secret.
-- last_used_at is written coalesced (at most once per interval per key).
CREATE TABLE app_keys (
	id           TEXT PRIMARY KEY,
	app_id       TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	mac          {{bytes}} NOT NULL,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL DEFAULT 0,
	revoked_at   BIGINT NOT NULL DEFAULT 0,
	last_used_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX app_keys_app ON app_keys (app_id, id);

-- A user's installation of an app: the scopes the user granted (JSON
-- array, a subset of the app's). user_id is the principal's user id.
CREATE TABLE app_installs (
	app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	user_id    TEXT NOT NULL,
	scopes     TEXT NOT NULL DEFAULT '[]',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_installs_user ON app_installs (user_id, app_id);
