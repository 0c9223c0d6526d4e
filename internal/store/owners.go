package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Owner lookups: which account owns a resource named only by its id. The
// channel rules use them ("owner" of device:{id}, session:{id}, ...), where
// the topic names the resource but not its account.

// DeviceOwner returns the account owning device id, revoked or not, or ""
// when there is no such device.
func (db *DB) DeviceOwner(ctx context.Context, id string) (string, error) {
	return db.owner(ctx, "devices", "device", id)
}

// SessionOwner returns the account owning session id, or "" when there is
// no such session.
func (db *DB) SessionOwner(ctx context.Context, id string) (string, error) {
	return db.owner(ctx, sessionsTable.table, sessionsTable.kind, id)
}

// MachineOwner returns the account owning machine id, or "" when there is
// no such machine.
func (db *DB) MachineOwner(ctx context.Context, id string) (string, error) {
	return db.owner(ctx, machinesTable.table, machinesTable.kind, id)
}

// ArtifactOwner returns the account owning artifact id, or "" when there is
// no such artifact.
func (db *DB) ArtifactOwner(ctx context.Context, id string) (string, error) {
	return db.owner(ctx, artifactsTable.table, artifactsTable.kind, id)
}

func (db *DB) owner(ctx context.Context, table, kind, id string) (string, error) {
	st, err := db.prepared(ctx, db.r, `SELECT account_id FROM `+table+` WHERE id = $1`)
	if err != nil {
		return "", fmt.Errorf("store: %s owner: %w", kind, err)
	}
	var account string
	switch err := st.QueryRowContext(ctx, id).Scan(&account); {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("store: %s owner: %w", kind, err)
	}
	return account, nil
}

// DeviceRevoked reports whether account's device id has been revoked; a
// device the store does not know is not revoked (tokens minted with
// "junction token" name no stored device). It answers from the revocations
// held in memory (revoked.go), read again from the database when they are
// older than Options.DeviceCacheTTL (with the cache disabled, from
// DeviceStatus), and implements auth.Revocations.
func (db *DB) DeviceRevoked(ctx context.Context, account, id string) (bool, error) {
	if ttl := db.opts.DeviceCacheTTL; ttl > 0 {
		if err := db.revoked.fresh(ctx, db, ttl); err != nil {
			return false, err
		}
		return db.revoked.deviceRevoked(account, id), nil
	}
	st, err := db.DeviceStatus(ctx, account, id)
	if err != nil {
		return false, err
	}
	return st == DeviceRevoked, nil
}

// LoginRevoked reports whether the login session sid has been revoked; an
// unknown login is not revoked, nor one whose refresh tokens have all
// expired. It answers as DeviceRevoked does (with the cache disabled, from
// LoginStatus); with DeviceRevoked it implements auth.Revocations. The
// family is looked up by its id alone: ids are random, and a family revoked
// under another account (possible only with an operator-minted token naming
// it) refuses rather than admits.
func (db *DB) LoginRevoked(ctx context.Context, account, sid string) (bool, error) {
	if ttl := db.opts.DeviceCacheTTL; ttl > 0 {
		if err := db.revoked.fresh(ctx, db, ttl); err != nil {
			return false, err
		}
		return db.revoked.loginRevoked(sid), nil
	}
	st, err := db.LoginStatus(ctx, sid)
	if err != nil {
		return false, err
	}
	return st == DeviceRevoked, nil
}
