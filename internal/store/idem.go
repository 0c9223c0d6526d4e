package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// IdemRecord is the stored outcome of an idempotent request, keyed by
// (Principal, Key). While the first request runs it is pending (Done
// false); IdemFinish stores the response. Records live until ExpiresAt and
// survive restarts.
type IdemRecord struct {
	// Principal scopes the key (for example "user:<id>" or "app:<id>").
	Principal string
	// Key is the client's idempotency key.
	Key string
	// Done is false while the first request is still in flight.
	Done bool
	// Status and Body are the stored response once Done.
	Status int
	Body   []byte
	// CreatedAt is when the first request began; FinishedAt when it ended.
	CreatedAt  time.Time
	FinishedAt time.Time
	// ExpiresAt is when the record stops deduplicating.
	ExpiresAt time.Time
}

const idemCols = `principal, idem_key, status, body, created_at, finished_at, expires_at`

func scanIdem(row interface{ Scan(...any) error }) (*IdemRecord, error) {
	var r IdemRecord
	var status, created, finished, expires int64
	if err := row.Scan(&r.Principal, &r.Key, &status, &r.Body, &created, &finished, &expires); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	r.Status = int(status)
	r.Done = finished != 0
	r.CreatedAt, r.FinishedAt, r.ExpiresAt = fromMicros(created), fromMicros(finished), fromMicros(expires)
	return &r, nil
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
// gets fresh=false and the record as it stands: finished (replay Status
// and Body) or pending (wait and poll Idem). An expired record is replaced
// as if absent. Exactly one of concurrent callers gets fresh=true.
func (db *DB) IdemBegin(ctx context.Context, principal, key string, ttl time.Duration) (rec *IdemRecord, fresh bool, err error) {
	if err := checkIdemKey(principal, key); err != nil {
		return nil, false, fmt.Errorf("store: idem begin: %w", err)
	}
	if ttl <= 0 {
		return nil, false, fmt.Errorf("store: idem begin: ttl %v: %w", ttl, ErrInvalid)
	}
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
		return nil, false, err
	}
	return rec, fresh, nil
}

// IdemFinish stores the response of a pending record. ErrNotFound if there
// is no live record, ErrDuplicate if it is already finished.
func (db *DB) IdemFinish(ctx context.Context, principal, key string, status int, body []byte) error {
	if err := db.checkSize("idempotent response", body); err != nil {
		return fmt.Errorf("store: idem finish: %w", err)
	}
	return db.write(ctx, "idem finish", func(tx *sql.Tx) error {
		now := micros(db.now())
		res, err := tx.ExecContext(ctx, `UPDATE idempotency SET status = $1, body = $2, finished_at = $3
			WHERE principal = $4 AND idem_key = $5 AND finished_at = 0 AND expires_at > $3`,
			int64(status), nonNil(body), now, principal, key)
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

// Idem returns the live record of (principal, key), for a caller polling a
// pending one; ErrNotFound if absent or expired.
func (db *DB) Idem(ctx context.Context, principal, key string) (*IdemRecord, error) {
	rec, err := scanIdem(db.r.QueryRowContext(ctx, `SELECT `+idemCols+` FROM idempotency
		WHERE principal = $1 AND idem_key = $2 AND expires_at > $3`, principal, key, micros(db.now())))
	if err != nil {
		return nil, fmt.Errorf("store: idem: %w", err)
	}
	return rec, nil
}
