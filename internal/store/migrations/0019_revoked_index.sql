-- Revocations held in memory (store/revoked.go): each process reads the
-- devices and refresh tokens revoked since its last look, about once a
-- second, through these partial indexes (a few entries: revocations are
-- rare beside connects).
CREATE INDEX devices_revoked ON devices (revoked_at) WHERE revoked_at <> 0;
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at) WHERE revoked_at <> 0;
