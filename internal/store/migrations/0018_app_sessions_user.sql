-- Apps platform: a user's sessions of an app, for the admin list of an
-- app's installations (each with its user's active sessions and latest
-- session) and for stopping a user's sessions on uninstall.
CREATE INDEX app_sessions_app_user ON app_sessions (app_id, user_id, created_at);
