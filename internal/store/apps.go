package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// App is a third-party backend that authenticates with an API key. The key
// is "<KeyID>.<secret>"; only a hash of it is stored, and auth compares
// hashes in constant time.
type App struct {
	ID         string
	Name       string
	KeyID      string
	KeyHash    []byte
	WebhookURL string
	// Permissions is a JSON document interpreted by auth.
	Permissions json.RawMessage
	CreatedAt   time.Time
}

// NewApp is the input of CreateApp.
type NewApp struct {
	Name        string
	KeyID       string
	KeyHash     []byte
	WebhookURL  string
	Permissions json.RawMessage // default {}
}

const appCols = `id, name, key_id, key_hash, webhook_url, permissions, created_at`

func scanApp(row *sql.Row) (App, error) {
	var a App
	var perms string
	var created int64
	if err := row.Scan(&a.ID, &a.Name, &a.KeyID, &a.KeyHash, &a.WebhookURL, &perms, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return App{}, ErrNotFound
		}
		return App{}, err
	}
	a.Permissions = json.RawMessage(perms)
	a.CreatedAt = fromMicros(created)
	return a, nil
}

// CreateApp registers an app; ErrDuplicate if KeyID is taken.
func (db *DB) CreateApp(ctx context.Context, na NewApp) (App, error) {
	if na.Name == "" || na.KeyID == "" || len(na.KeyHash) == 0 {
		return App{}, fmt.Errorf("store: create app: name, key id and key hash are required: %w", ErrInvalid)
	}
	if len(na.Permissions) == 0 {
		na.Permissions = json.RawMessage(`{}`)
	}
	if !json.Valid(na.Permissions) {
		return App{}, fmt.Errorf("store: create app: permissions are not JSON: %w", ErrInvalid)
	}
	var a App
	err := db.write(ctx, "create app", func(tx *sql.Tx) error {
		now := db.now()
		var err error
		a, err = scanApp(tx.QueryRowContext(ctx, `INSERT INTO apps (`+appCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+appCols,
			newID(now), na.Name, na.KeyID, na.KeyHash, na.WebhookURL, string(na.Permissions), micros(now)))
		if isUnique(err) {
			return ErrDuplicate
		}
		return err
	})
	return a, err
}

// AppByKeyID returns the app whose API key has keyID, with the key's hash,
// for auth's API key check.
func (db *DB) AppByKeyID(ctx context.Context, keyID string) (App, error) {
	a, err := scanApp(db.r.QueryRowContext(ctx, `SELECT `+appCols+` FROM apps WHERE key_id = $1`, keyID))
	if err != nil {
		return App{}, fmt.Errorf("store: app by key id: %w", err)
	}
	return a, nil
}

// App returns the app with id.
func (db *DB) App(ctx context.Context, id string) (App, error) {
	a, err := scanApp(db.r.QueryRowContext(ctx, `SELECT `+appCols+` FROM apps WHERE id = $1`, id))
	if err != nil {
		return App{}, fmt.Errorf("store: app: %w", err)
	}
	return a, nil
}
