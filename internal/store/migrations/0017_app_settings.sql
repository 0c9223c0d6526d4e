-- Apps platform: a user's settings of an app, validated against the app's
-- settings schema by internal/apps. version starts at 1 and grows by one at
-- each write (compare-and-set on the version the writer saw).
CREATE TABLE app_settings (
	app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	user_id    TEXT NOT NULL,
	vals       TEXT NOT NULL,
	version    BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (app_id, user_id)
);
