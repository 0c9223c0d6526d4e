package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Update kinds: "<object>.<change>". The body of each is a JSON object
// described next to the constant.
const (
	// KindSessionCreated: the Session (JSON of type Session).
	KindSessionCreated = "session.created"
	// KindSessionUpdated: {"id", and the changed field: "metadata" or
	// "agentState" as {"value","version"}}.
	KindSessionUpdated = "session.updated"
	// KindSessionDeleted: {"id"}.
	KindSessionDeleted = "session.deleted"
	// KindMessageCreated: the Message.
	KindMessageCreated = "message.created"
	// KindMachineCreated: the Machine.
	KindMachineCreated = "machine.created"
	// KindMachineUpdated: {"id", and "metadata" or "daemonState"}.
	KindMachineUpdated = "machine.updated"
	// KindMachineDeleted: {"id"}.
	KindMachineDeleted = "machine.deleted"
	// KindArtifactCreated: the Artifact.
	KindArtifactCreated = "artifact.created"
	// KindArtifactUpdated: {"id", and "header" or "body"}.
	KindArtifactUpdated = "artifact.updated"
	// KindArtifactDeleted: {"id"}.
	KindArtifactDeleted = "artifact.deleted"
	// KindDeviceCreated: the Device (without its push token).
	KindDeviceCreated = "device.created"
	// KindDeviceUpdated: the Device after a rename or push token change.
	KindDeviceUpdated = "device.updated"
	// KindDeviceRevoked: the Device, with revokedAt set.
	KindDeviceRevoked = "device.revoked"
)

// Update is one entry of an account's sync log. Every change to an
// account-visible object writes one, in the same transaction as the change,
// with the account's next Seq (1, 2, 3, ... with no gaps).
type Update struct {
	// Seq is the per-account sequence number.
	Seq int64 `json:"seq"`
	// Kind is one of the Kind... constants.
	Kind string `json:"kind"`
	// ID is the id of the object that changed (for messages, the message id).
	ID string `json:"id"`
	// Version is the version the change produced: 1 for a creation, the
	// changed field's new version for an update, the message seq for a
	// message, the device version for a device, 0 for a deletion.
	Version int64 `json:"version"`
	// Body is a JSON document describing the change (see the kinds).
	Body json.RawMessage `json:"body"`
	// CreatedAt is the time of the transaction that wrote it.
	CreatedAt time.Time `json:"createdAt"`
}

// newUpdate builds an update whose Seq is assigned by emit.
func newUpdate(kind, id string, version int64, body any) (Update, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Update{}, fmt.Errorf("encode update %s: %w", kind, err)
	}
	return Update{Kind: kind, ID: id, Version: version, Body: b}, nil
}

// emit gives ups the account's next sequence numbers and inserts them, in
// tx. It must be the LAST statement group of a write transaction: it locks
// the account's counter row (UPDATE ... RETURNING), which serializes all
// writers of the account until commit, so the counter is held briefly and
// sequence numbers become visible in order. A rollback undoes the bump, so
// the log never has gaps. It also prunes the log down to UpdateRetention.
func (db *DB) emit(ctx context.Context, tx *sql.Tx, account string, ups []Update) ([]Update, error) {
	if len(ups) == 0 {
		return nil, nil
	}
	var last, floor int64
	err := tx.QueryRowContext(ctx,
		`UPDATE accounts SET update_seq = update_seq + $1 WHERE id = $2 RETURNING update_seq, update_floor`,
		int64(len(ups)), account).Scan(&last, &floor)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("bump update seq: account %s: %w", account, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("bump update seq: %w", err)
	}
	now := db.now().Truncate(time.Microsecond)
	first := last - int64(len(ups)) + 1
	out := make([]Update, len(ups))
	for i, u := range ups {
		u.Seq = first + int64(i)
		u.CreatedAt = now
		out[i] = u
	}
	const cols = 7
	for start := 0; start < len(out); start += MaxBatch {
		chunk := out[start:min(start+MaxBatch, len(out))]
		args := make([]any, 0, len(chunk)*cols)
		for _, u := range chunk {
			args = append(args, account, u.Seq, u.Kind, u.ID, u.Version, []byte(u.Body), micros(now))
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO updates (account_id, seq, kind, object_id, version, body, created_at) VALUES `+
				db.placeholders(1, len(chunk), cols), args...); err != nil {
			return nil, fmt.Errorf("insert updates: %w", err)
		}
	}
	// Keep between UpdateRetention and UpdateRetention+slack rows, so the
	// delete runs once every slack updates instead of on every write.
	keep := int64(db.opts.UpdateRetention)
	slack := max(1, keep/16)
	if last-floor > keep+slack {
		newFloor := last - keep
		if _, err := tx.ExecContext(ctx, `DELETE FROM updates WHERE account_id = $1 AND seq <= $2`, account, newFloor); err != nil {
			return nil, fmt.Errorf("prune updates: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET update_floor = $1 WHERE id = $2`, newFloor, account); err != nil {
			return nil, fmt.Errorf("prune updates: raise floor: %w", err)
		}
	}
	return out, nil
}

// UpdateSeq returns the account's last update sequence number. A client
// that must start over (reset) reads it before fetching fresh state, then
// asks for updates since it; replays of changes already in that state carry
// versions the client already has.
func (db *DB) UpdateSeq(ctx context.Context, account string) (int64, error) {
	var seq int64
	err := db.r.QueryRowContext(ctx, `SELECT update_seq FROM accounts WHERE id = $1`, account).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: update seq: %w", ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("store: update seq: %w", err)
	}
	return seq, nil
}

// UpdatesSince returns up to limit updates with Seq > sinceSeq, in Seq
// order (limit <= 0 means 100; capped at MaxUpdatesLimit). reset is true,
// with no updates, when the log no longer holds every update after sinceSeq
// (pruned by retention or age) or sinceSeq is beyond the account's last seq
// (the client's state comes from elsewhere): the client must fetch fresh
// state and continue from UpdateSeq. Rows and the retention floor are read
// in one snapshot, so reset=false guarantees the returned updates are
// exactly the next ones.
func (db *DB) UpdatesSince(ctx context.Context, account string, sinceSeq int64, limit int) (updates []Update, reset bool, err error) {
	if sinceSeq < 0 {
		return nil, false, fmt.Errorf("store: updates since %d: %w", sinceSeq, ErrInvalid)
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxUpdatesLimit)
	err = db.read(ctx, "updates since", func(tx *sql.Tx) error {
		var last, floor int64
		err := tx.QueryRowContext(ctx, `SELECT update_seq, update_floor FROM accounts WHERE id = $1`, account).Scan(&last, &floor)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if sinceSeq < floor || sinceSeq > last {
			reset = true
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT seq, kind, object_id, version, body, created_at FROM updates
			WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, account, sinceSeq, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		updates = make([]Update, 0, min(limit, int(last-sinceSeq)))
		for rows.Next() {
			var u Update
			var body []byte
			var created int64
			if err := rows.Scan(&u.Seq, &u.Kind, &u.ID, &u.Version, &body, &created); err != nil {
				return err
			}
			u.Body = body
			u.CreatedAt = fromMicros(created)
			updates = append(updates, u)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, false, err
	}
	return updates, reset, nil
}

// PruneStats counts the rows one Prune removed.
type PruneStats struct {
	Updates, Idempotency, PairingCodes, RefreshTokens int64
}

// Prune removes expired idempotency records, pairing codes and refresh
// tokens, and, when Options.UpdateMaxAge is set, updates older than that
// (raising each account's retention floor, so UpdatesSince answers reset
// for them). Run it periodically; it is one transaction.
func (db *DB) Prune(ctx context.Context) (PruneStats, error) {
	var st PruneStats
	err := db.write(ctx, "prune", func(tx *sql.Tx) error {
		st = PruneStats{}
		now := micros(db.now())
		del := func(n *int64, q string, args ...any) error {
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return err
			}
			*n, err = res.RowsAffected()
			return err
		}
		if db.opts.UpdateMaxAge > 0 {
			cutoff := micros(db.now().Add(-db.opts.UpdateMaxAge))
			// Raise each floor to the newest row about to go, never lower it
			// (a concurrent emit may have pruned past it already).
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET update_floor = (
					SELECT MAX(u.seq) FROM updates u WHERE u.account_id = accounts.id AND u.created_at < $1)
				WHERE update_floor < (SELECT MAX(u.seq) FROM updates u WHERE u.account_id = accounts.id AND u.created_at < $1)`,
				cutoff); err != nil {
				return fmt.Errorf("raise floors: %w", err)
			}
			if err := del(&st.Updates, `DELETE FROM updates WHERE created_at < $1`, cutoff); err != nil {
				return fmt.Errorf("delete old updates: %w", err)
			}
		}
		if err := del(&st.Idempotency, `DELETE FROM idempotency WHERE expires_at <= $1`, now); err != nil {
			return fmt.Errorf("delete idempotency records: %w", err)
		}
		if err := del(&st.PairingCodes, `DELETE FROM pairing_codes WHERE expires_at <= $1`, now); err != nil {
			return fmt.Errorf("delete pairing codes: %w", err)
		}
		if err := del(&st.RefreshTokens, `DELETE FROM refresh_tokens WHERE expires_at <= $1`, now); err != nil {
			return fmt.Errorf("delete refresh tokens: %w", err)
		}
		return nil
	})
	return st, err
}
