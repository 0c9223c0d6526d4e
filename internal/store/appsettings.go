package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AppSettings are a user's settings of an app: the values (a JSON object)
// and their version (1 for the first write).
type AppSettings struct {
	AppID     string
	UserID    string
	Values    json.RawMessage
	Version   int64
	UpdatedAt time.Time
}

// AppSettingsOf returns a user's settings of an app; ErrNotFound when none
// were written.
func (db *DB) AppSettingsOf(ctx context.Context, appID, userID string) (AppSettings, error) {
	s, err := scanAppSettings(db.r.QueryRowContext(ctx, `SELECT app_id, user_id, vals, version, updated_at FROM app_settings WHERE app_id = $1 AND user_id = $2`, appID, userID))
	if err != nil {
		return AppSettings{}, fmt.Errorf("store: app settings: %w", err)
	}
	return s, nil
}

func scanAppSettings(row scanner) (AppSettings, error) {
	var s AppSettings
	var vals string
	var updated int64
	if err := row.Scan(&s.AppID, &s.UserID, &vals, &s.Version, &updated); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return AppSettings{}, ErrNotFound
		}
		return AppSettings{}, err
	}
	s.Values, s.UpdatedAt = json.RawMessage(vals), fromMicros(updated)
	return s, nil
}

// PutAppSettings writes a user's settings of an app if their version is
// still ifVersion (0: none written yet); the new version is ifVersion+1.
// ErrConflict, with the current settings, when the version moved;
// ErrNotFound for an unknown app.
func (db *DB) PutAppSettings(ctx context.Context, appID, userID string, values json.RawMessage, ifVersion int64) (AppSettings, error) {
	var out AppSettings
	err := db.write(ctx, "put app settings", func(tx *sql.Tx) error {
		now := micros(db.now())
		cur, err := scanAppSettings(tx.QueryRowContext(ctx, `SELECT app_id, user_id, vals, version, updated_at FROM app_settings WHERE app_id = $1 AND user_id = $2`, appID, userID))
		switch {
		case errors.Is(err, ErrNotFound):
			if ifVersion != 0 {
				return ErrConflict
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO app_settings (app_id, user_id, vals, version, updated_at) VALUES ($1, $2, $3, 1, $4)`,
				appID, userID, string(values), now); err != nil {
				if isForeignKey(err) {
					return ErrNotFound
				}
				return err
			}
		case err != nil:
			return err
		case cur.Version != ifVersion:
			out = cur
			return ErrConflict
		default:
			if _, err := tx.ExecContext(ctx, `UPDATE app_settings SET vals = $1, version = version + 1, updated_at = $2 WHERE app_id = $3 AND user_id = $4`,
				string(values), now, appID, userID); err != nil {
				return err
			}
		}
		out, err = scanAppSettings(tx.QueryRowContext(ctx, `SELECT app_id, user_id, vals, version, updated_at FROM app_settings WHERE app_id = $1 AND user_id = $2`, appID, userID))
		return err
	})
	return out, err
}

// DeleteAppSettings forgets a user's settings of an app (an uninstall).
func (db *DB) DeleteAppSettings(ctx context.Context, appID, userID string) error {
	return db.write(ctx, "delete app settings", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM app_settings WHERE app_id = $1 AND user_id = $2`, appID, userID)
		return err
	})
}
