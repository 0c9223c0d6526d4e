package store

import (
	"context"
	"database/sql"
	"errors"
)

// KindSessionVoice: a voice room was opened for a session; body
// {"id", "room", "url"}. Nothing else is stored: the update log is the
// record, and the room's name is derived from the session.
const KindSessionVoice = "session.voice"

// AnnounceSessionVoice emits session.voice for one of account's sessions,
// in one transaction with the check that the session is the account's
// (ErrNotFound otherwise, whoever else owns it).
func (db *DB) AnnounceSessionVoice(ctx context.Context, account, sessionID, room, url string) ([]Update, error) {
	var ups []Update
	err := db.write(ctx, "announce session voice", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM sessions WHERE id = $1 AND account_id = $2`, sessionID, account).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		u, err := newUpdate(KindSessionVoice, sessionID, 0, map[string]string{"id": sessionID, "room": room, "url": url})
		if err != nil {
			return err
		}
		ups, err = db.emit(ctx, tx, account, []Update{u})
		return err
	})
	return ups, err
}
