package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The apps platform's records: registered apps, their API keys and users'
// installations. The store checks only what its schema needs (ids, JSON);
// internal/apps validates the rest.

// App is a registered third-party app.
type App struct {
	ID         string // reverse-DNS, chosen at registration
	Name       string
	Kind       string // foreground, background or system
	WebhookURL string
	// Scopes are the scopes the app asks users for.
	Scopes   []string
	Priority string // the output priority class
	// SettingsSchema is a JSON Schema document, or empty.
	SettingsSchema json.RawMessage
	// Tools is a JSON array of tool schemas.
	Tools        json.RawMessage
	Capabilities []string // device capabilities the app requires
	Owner        string   // the user id of its developer or operator
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// AppKey is one API key of an app. The secret is never stored: MAC is
// auth.APIKeyMAC of it under the server's pepper.
type AppKey struct {
	ID         string
	AppID      string
	MAC        []byte
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	RevokedAt  time.Time // zero: active
	LastUsedAt time.Time // zero: never used (written coalesced)
}

// Install is a user's installation of an app, with the scopes granted.
type Install struct {
	AppID     string
	UserID    string
	Scopes    []string
	CreatedAt time.Time
	UpdatedAt time.Time
}

const (
	appCols     = `id, name, kind, webhook_url, scopes, priority, settings_schema, tools, capabilities, owner, created_at, updated_at`
	appKeyCols  = `id, app_id, mac, created_at, expires_at, revoked_at, last_used_at`
	installCols = `app_id, user_id, scopes, created_at, updated_at`
)

type scanner interface{ Scan(dest ...any) error }

func scanApp(row scanner) (App, error) {
	var a App
	var scopes, schema, tools, caps string
	var created, updated int64
	if err := row.Scan(&a.ID, &a.Name, &a.Kind, &a.WebhookURL, &scopes, &a.Priority, &schema, &tools, &caps, &a.Owner, &created, &updated); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return App{}, ErrNotFound
		}
		return App{}, err
	}
	if err := json.Unmarshal([]byte(scopes), &a.Scopes); err != nil {
		return App{}, fmt.Errorf("app %s: scopes: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(caps), &a.Capabilities); err != nil {
		return App{}, fmt.Errorf("app %s: capabilities: %w", a.ID, err)
	}
	if schema != "" {
		a.SettingsSchema = json.RawMessage(schema)
	}
	a.Tools = json.RawMessage(tools)
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return a, nil
}

func scanAppKey(row scanner) (AppKey, error) {
	var k AppKey
	var created, expires, revoked, used int64
	if err := row.Scan(&k.ID, &k.AppID, &k.MAC, &created, &expires, &revoked, &used); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return AppKey{}, ErrNotFound
		}
		return AppKey{}, err
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromMicros(created), fromMicros(expires), fromMicros(revoked), fromMicros(used)
	return k, nil
}

func scanInstall(row scanner) (Install, error) {
	var in Install
	var scopes string
	var created, updated int64
	if err := row.Scan(&in.AppID, &in.UserID, &scopes, &created, &updated); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Install{}, ErrNotFound
		}
		return Install{}, err
	}
	if err := json.Unmarshal([]byte(scopes), &in.Scopes); err != nil {
		return Install{}, fmt.Errorf("install %s/%s: scopes: %w", in.AppID, in.UserID, err)
	}
	in.CreatedAt, in.UpdatedAt = fromMicros(created), fromMicros(updated)
	return in, nil
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// CreateApp registers a and, in the same transaction, its first API key
// (key.AppID is set to a.ID). ErrDuplicate when the app id (or the key id)
// is taken.
func (db *DB) CreateApp(ctx context.Context, a App, key AppKey) (App, AppKey, error) {
	if a.ID == "" || a.Name == "" || a.Kind == "" || key.ID == "" || len(key.MAC) == 0 {
		return App{}, AppKey{}, fmt.Errorf("store: create app: id, name, kind and a key are required: %w", ErrInvalid)
	}
	if len(a.Tools) == 0 {
		a.Tools = json.RawMessage(`[]`)
	}
	if !json.Valid(a.Tools) || (len(a.SettingsSchema) > 0 && !json.Valid(a.SettingsSchema)) {
		return App{}, AppKey{}, fmt.Errorf("store: create app: tools or settings schema are not JSON: %w", ErrInvalid)
	}
	var out App
	var k AppKey
	err := db.write(ctx, "create app", func(tx *sql.Tx) error {
		now := micros(db.now())
		var err error
		out, err = scanApp(tx.QueryRowContext(ctx, `INSERT INTO apps (`+appCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING `+appCols,
			a.ID, a.Name, a.Kind, a.WebhookURL, jsonList(a.Scopes), a.Priority, string(a.SettingsSchema), string(a.Tools), jsonList(a.Capabilities), a.Owner, now, now))
		if isUnique(err) {
			return ErrDuplicate
		}
		if err != nil {
			return err
		}
		key.AppID = a.ID
		k, err = insertAppKey(ctx, tx, key, now)
		return err
	})
	return out, k, err
}

func insertAppKey(ctx context.Context, tx *sql.Tx, k AppKey, now int64) (AppKey, error) {
	out, err := scanAppKey(tx.QueryRowContext(ctx, `INSERT INTO app_keys (`+appKeyCols+`) VALUES ($1, $2, $3, $4, $5, 0, 0) RETURNING `+appKeyCols,
		k.ID, k.AppID, k.MAC, now, micros(k.ExpiresAt)))
	switch {
	case isUnique(err):
		return AppKey{}, ErrDuplicate
	case isForeignKey(err):
		return AppKey{}, ErrNotFound
	}
	return out, err
}

// App returns the app with id.
func (db *DB) App(ctx context.Context, id string) (App, error) {
	a, err := scanApp(db.r.QueryRowContext(ctx, `SELECT `+appCols+` FROM apps WHERE id = $1`, id))
	if err != nil {
		return App{}, fmt.Errorf("store: app: %w", err)
	}
	return a, nil
}

// Apps returns up to limit apps (<= 0: DefaultPageLimit; at most
// MaxPageLimit) with ids after after, in id order, and whether more follow.
func (db *DB) Apps(ctx context.Context, after string, limit int) ([]App, bool, error) {
	n, err := Page{Limit: limit}.limit()
	if err != nil {
		return nil, false, fmt.Errorf("store: apps: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+appCols+` FROM apps WHERE id > $1 ORDER BY id LIMIT $2`, after, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: apps: %w", err)
	}
	out, err := collect(rows, scanApp)
	if err != nil {
		return nil, false, fmt.Errorf("store: apps: %w", err)
	}
	if len(out) > n {
		return out[:n], true, nil
	}
	return out, false, nil
}

// DeleteApp deletes an app with its keys and installations, and returns the
// users who had it installed (so that their live connections can be
// closed). ErrNotFound when there is no such app.
func (db *DB) DeleteApp(ctx context.Context, id string) ([]string, error) {
	var users []string
	err := db.write(ctx, "delete app", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT user_id FROM app_installs WHERE app_id = $1 ORDER BY user_id`, id)
		if err != nil {
			return err
		}
		users, err = collect(rows, func(r scanner) (string, error) {
			var u string
			return u, r.Scan(&u)
		})
		if err != nil {
			return err
		}
		// The children explicitly: a PostgreSQL or SQLite without foreign
		// keys enforced would otherwise keep them.
		for _, q := range []string{`DELETE FROM app_installs WHERE app_id = $1`, `DELETE FROM app_keys WHERE app_id = $1`} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM apps WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		return nil
	})
	return users, err
}

// AddAppKey adds an API key to an app. When overlapUntil is not zero, every
// other key of the app that is active and expires later than overlapUntil
// (or never) is set to expire then: a rotation whose old keys keep working
// until overlapUntil. ErrNotFound for an unknown app.
func (db *DB) AddAppKey(ctx context.Context, key AppKey, overlapUntil time.Time) (AppKey, error) {
	if key.ID == "" || key.AppID == "" || len(key.MAC) == 0 {
		return AppKey{}, fmt.Errorf("store: add app key: id, app and mac are required: %w", ErrInvalid)
	}
	var out AppKey
	err := db.write(ctx, "add app key", func(tx *sql.Tx) error {
		now := micros(db.now())
		var err error
		if out, err = insertAppKey(ctx, tx, key, now); err != nil {
			return err
		}
		if overlapUntil.IsZero() {
			return nil
		}
		until := micros(overlapUntil)
		_, err = tx.ExecContext(ctx, `UPDATE app_keys SET expires_at = $1
			WHERE app_id = $2 AND id <> $3 AND revoked_at = 0 AND (expires_at = 0 OR expires_at > $4)`,
			until, key.AppID, key.ID, until)
		return err
	})
	return out, err
}

// AppKeys returns an app's keys, revoked and expired ones included, oldest
// first. An unknown app has none.
func (db *DB) AppKeys(ctx context.Context, appID string) ([]AppKey, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+appKeyCols+` FROM app_keys WHERE app_id = $1 ORDER BY created_at, id`, appID)
	if err != nil {
		return nil, fmt.Errorf("store: app keys: %w", err)
	}
	out, err := collect(rows, scanAppKey)
	if err != nil {
		return nil, fmt.Errorf("store: app keys: %w", err)
	}
	return out, nil
}

// AppKeyWithApp returns the key with id and its app, for authentication.
// ErrNotFound when no key has the id.
func (db *DB) AppKeyWithApp(ctx context.Context, id string) (AppKey, App, error) {
	row := db.r.QueryRowContext(ctx, `SELECT k.id, k.app_id, k.mac, k.created_at, k.expires_at, k.revoked_at, k.last_used_at,
		a.id, a.name, a.kind, a.webhook_url, a.scopes, a.priority, a.settings_schema, a.tools, a.capabilities, a.owner, a.created_at, a.updated_at
		FROM app_keys k JOIN apps a ON a.id = k.app_id WHERE k.id = $1`, id)
	var k AppKey
	var a App
	var created, expires, revoked, used int64
	var scopes, schema, tools, caps string
	var acreated, aupdated int64
	err := row.Scan(&k.ID, &k.AppID, &k.MAC, &created, &expires, &revoked, &used,
		&a.ID, &a.Name, &a.Kind, &a.WebhookURL, &scopes, &a.Priority, &schema, &tools, &caps, &a.Owner, &acreated, &aupdated)
	if errors.Is(err, sql.ErrNoRows) {
		return AppKey{}, App{}, fmt.Errorf("store: app key: %w", ErrNotFound)
	}
	if err != nil {
		return AppKey{}, App{}, fmt.Errorf("store: app key: %w", err)
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromMicros(created), fromMicros(expires), fromMicros(revoked), fromMicros(used)
	if err := json.Unmarshal([]byte(scopes), &a.Scopes); err != nil {
		return AppKey{}, App{}, fmt.Errorf("store: app key: app scopes: %w", err)
	}
	if err := json.Unmarshal([]byte(caps), &a.Capabilities); err != nil {
		return AppKey{}, App{}, fmt.Errorf("store: app key: app capabilities: %w", err)
	}
	if schema != "" {
		a.SettingsSchema = json.RawMessage(schema)
	}
	a.Tools = json.RawMessage(tools)
	a.CreatedAt, a.UpdatedAt = fromMicros(acreated), fromMicros(aupdated)
	return k, a, nil
}

// RevokeAppKey revokes an app's key and returns it; revoking a revoked key
// returns it unchanged. ErrNotFound when the app has no such key.
func (db *DB) RevokeAppKey(ctx context.Context, appID, keyID string) (AppKey, error) {
	var k AppKey
	err := db.write(ctx, "revoke app key", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE app_keys SET revoked_at = $1 WHERE app_id = $2 AND id = $3 AND revoked_at = 0`,
			micros(db.now()), appID, keyID); err != nil {
			return err
		}
		var err error
		k, err = scanAppKey(tx.QueryRowContext(ctx, `SELECT `+appKeyCols+` FROM app_keys WHERE app_id = $1 AND id = $2`, appID, keyID))
		return err
	})
	return k, err
}

// TouchAppKeys records the last use of keys (id → time) in one
// transaction, never moving a time backwards. Unknown ids are skipped.
func (db *DB) TouchAppKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	return db.write(ctx, "touch app keys", func(tx *sql.Tx) error {
		for id, at := range used {
			if _, err := tx.ExecContext(ctx, `UPDATE app_keys SET last_used_at = $1 WHERE id = $2 AND last_used_at < $3`,
				micros(at), id, micros(at)); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutInstall installs an app for a user with scopes, or replaces the scopes
// of an existing installation; created reports which. ErrNotFound for an
// unknown app.
func (db *DB) PutInstall(ctx context.Context, appID, userID string, scopes []string) (in Install, created bool, err error) {
	if appID == "" || userID == "" {
		return Install{}, false, fmt.Errorf("store: install: app and user are required: %w", ErrInvalid)
	}
	err = db.write(ctx, "install app", func(tx *sql.Tx) error {
		now := micros(db.now())
		res, err := tx.ExecContext(ctx, `UPDATE app_installs SET scopes = $1, updated_at = $2 WHERE app_id = $3 AND user_id = $4`,
			jsonList(scopes), now, appID, userID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			// Foreign keys are enforced on both dialects, but an unknown
			// app is asked explicitly for a clear error on either.
			if _, err := scanApp(tx.QueryRowContext(ctx, `SELECT `+appCols+` FROM apps WHERE id = $1`, appID)); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO app_installs (`+installCols+`) VALUES ($1, $2, $3, $4, $5)`,
				appID, userID, jsonList(scopes), now, now)
			if isUnique(err) {
				return fmt.Errorf("concurrent install: %w", ErrConflict)
			}
			if err != nil {
				return err
			}
			created = true
		}
		in, err = scanInstall(tx.QueryRowContext(ctx, `SELECT `+installCols+` FROM app_installs WHERE app_id = $1 AND user_id = $2`, appID, userID))
		return err
	})
	return in, created, err
}

// Install returns a user's installation of an app, or ErrNotFound.
func (db *DB) Install(ctx context.Context, appID, userID string) (Install, error) {
	in, err := scanInstall(db.r.QueryRowContext(ctx, `SELECT `+installCols+` FROM app_installs WHERE app_id = $1 AND user_id = $2`, appID, userID))
	if err != nil {
		return Install{}, fmt.Errorf("store: install: %w", err)
	}
	return in, nil
}

// DeleteInstall uninstalls an app for a user; ErrNotFound when it was not
// installed.
func (db *DB) DeleteInstall(ctx context.Context, appID, userID string) error {
	return db.write(ctx, "uninstall app", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM app_installs WHERE app_id = $1 AND user_id = $2`, appID, userID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		return nil
	})
}

// InstallsOfUser returns up to limit (<= 0: DefaultPageLimit; at most
// MaxPageLimit) of a user's installations with app ids after after, in app
// id order, and whether more follow.
func (db *DB) InstallsOfUser(ctx context.Context, userID, after string, limit int) ([]Install, bool, error) {
	return db.installs(ctx, `user_id = $1 AND app_id > $2 ORDER BY app_id`, userID, after, limit)
}

// InstallsOfApp returns up to limit of an app's installations with user ids
// after after, in user id order, and whether more follow.
func (db *DB) InstallsOfApp(ctx context.Context, appID, after string, limit int) ([]Install, bool, error) {
	return db.installs(ctx, `app_id = $1 AND user_id > $2 ORDER BY user_id`, appID, after, limit)
}

func (db *DB) installs(ctx context.Context, where, id, after string, limit int) ([]Install, bool, error) {
	n, err := Page{Limit: limit}.limit()
	if err != nil {
		return nil, false, fmt.Errorf("store: installs: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+installCols+` FROM app_installs WHERE `+where+` LIMIT $3`, id, after, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: installs: %w", err)
	}
	out, err := collect(rows, scanInstall)
	if err != nil {
		return nil, false, fmt.Errorf("store: installs: %w", err)
	}
	if len(out) > n {
		return out[:n], true, nil
	}
	return out, false, nil
}

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
