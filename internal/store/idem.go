package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Idempotency records: the outcome of the first request that carried an
// idempotency key, per (principal, key), so that a repeat is answered with
// it. While the first request runs the record is pending; IdemFinish stores
// its body (opaque bytes the caller chose). Records live until their ttl
// passes and survive restarts. The methods implement the hub's
// IdemRecords interface structurally (the store imports nothing of ours);
// cmd/junction holds the compile-time guard.

// idemRow is one row of the idempotency table.
type idemRow struct {
	done      bool
	body      []byte
	createdAt time.Time
}

const idemCols = `body, created_at, finished_at`

func scanIdem(row interface{ Scan(...any) error }) (idemRow, error) {
	var r idemRow
	var created, finished int64
	if err := row.Scan(&r.body, &created, &finished); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return r, ErrNotFound
		}
		return r, err
	}
	r.done = finished != 0
	if !r.done {
		r.body = nil
	}
	r.createdAt = fromMicros(created)
	return r, nil
}

const maxIdemKeyBytes = 256

func checkIdemKey(principal, key string) error {
	if principal == "" || key == "" || len(principal) > maxIdemKeyBytes || len(key) > maxIdemKeyBytes {
		return fmt.Errorf("principal and key must be 1..%d bytes: %w", maxIdemKeyBytes, ErrInvalid)
	}
	return nil
}

// IdemBegin claims (principal, key) for ttl. The first caller gets
// fresh=true and a pending record: it runs the request and then calls
// IdemFinish (or IdemAbort on a failure worth retrying). Any other caller
// gets fresh=false and the record as it stands: finished (done, replay
// body) or pending since started (wait and poll IdemLookup). An expired
// record is replaced as if absent. Exactly one of concurrent callers gets
// fresh=true.
func (db *DB) IdemBegin(ctx context.Context, principal, key string, ttl time.Duration) (fresh, done bool, body []byte, started time.Time, err error) {
	if err := checkIdemKey(principal, key); err != nil {
		return false, false, nil, time.Time{}, fmt.Errorf("store: idem begin: %w", err)
	}
	if ttl <= 0 {
		return false, false, nil, time.Time{}, fmt.Errorf("store: idem begin: ttl %v: %w", ttl, ErrInvalid)
	}
	var rec idemRow
	err = db.write(ctx, "idem begin", func(tx *sql.Tx) error {
		now := db.now()
		// Insert, or take over an expired record; a live record is left
		// alone and RETURNING yields no row.
		rec, err = scanIdem(tx.QueryRowContext(ctx, `INSERT INTO idempotency (principal, idem_key, created_at, expires_at)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (principal, idem_key) DO UPDATE SET status = 0, body = NULL, finished_at = 0,
				created_at = excluded.created_at, expires_at = excluded.expires_at
			WHERE idempotency.expires_at <= $3
			RETURNING `+idemCols, principal, key, micros(now), micros(now.Add(ttl))))
		if err == nil {
			fresh = true
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		fresh = false
		rec, err = scanIdem(tx.QueryRowContext(ctx, `SELECT `+idemCols+` FROM idempotency WHERE principal = $1 AND idem_key = $2`,
			principal, key))
		return err
	})
	if err != nil {
		return false, false, nil, time.Time{}, err
	}
	return fresh, rec.done, rec.body, rec.createdAt, nil
}

// IdemFinish stores the outcome of a pending record. ErrNotFound if there
// is no live record, ErrDuplicate if it is already finished.
func (db *DB) IdemFinish(ctx context.Context, principal, key string, body []byte) error {
	if err := db.checkSize("idempotent response", body); err != nil {
		return fmt.Errorf("store: idem finish: %w", err)
	}
	return db.write(ctx, "idem finish", func(tx *sql.Tx) error {
		now := micros(db.now())
		res, err := tx.ExecContext(ctx, `UPDATE idempotency SET body = $1, finished_at = $2
			WHERE principal = $3 AND idem_key = $4 AND finished_at = 0 AND expires_at > $2`,
			nonNil(body), now, principal, key)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
		var finished int64
		err = tx.QueryRowContext(ctx, `SELECT finished_at FROM idempotency WHERE principal = $1 AND idem_key = $2 AND expires_at > $3`,
			principal, key, now).Scan(&finished)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return ErrDuplicate
	})
}

// IdemAbort deletes a pending record so the request can be retried with the
// same key. A finished record is kept (ErrDuplicate).
func (db *DB) IdemAbort(ctx context.Context, principal, key string) error {
	return db.write(ctx, "idem abort", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE principal = $1 AND idem_key = $2 AND finished_at = 0`, principal, key)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM idempotency WHERE principal = $1 AND idem_key = $2`, principal, key).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return ErrDuplicate
	})
}

// IdemLookup returns the live record of (principal, key), for a caller
// polling a pending one; found is false if it is absent or expired.
func (db *DB) IdemLookup(ctx context.Context, principal, key string) (found, done bool, body []byte, started time.Time, err error) {
	rec, err := scanIdem(db.r.QueryRowContext(ctx, `SELECT `+idemCols+` FROM idempotency
		WHERE principal = $1 AND idem_key = $2 AND expires_at > $3`, principal, key, micros(db.now())))
	if errors.Is(err, ErrNotFound) {
		return false, false, nil, time.Time{}, nil
	}
	if err != nil {
		return false, false, nil, time.Time{}, fmt.Errorf("store: idem lookup: %w", err)
	}
	return true, rec.done, rec.body, rec.createdAt, nil
}
