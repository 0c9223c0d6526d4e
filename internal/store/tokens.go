package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// RefreshToken is the stored form of a refresh token: its SHA-256 hash and
// what it grants. Tokens rotate: each use yields a new token in the same
// family, and presenting a used token again revokes the family (RFC 6819
// §5.2.2.3, refresh token rotation with reuse detection).
type RefreshToken struct {
	// Hash is SHA-256 of the token (see HashToken); the token itself is
	// never stored.
	Hash []byte
	// FamilyID groups the tokens descended from one login.
	FamilyID string
	// AccountID and DeviceID are what the token authenticates.
	AccountID string
	DeviceID  string
	// SessionID is the login session ("sid" claim).
	SessionID string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is when it was rotated; zero while unused.
	UsedAt time.Time
	// RevokedAt is when it (its family or device) was revoked; zero if not.
	RevokedAt time.Time
}

// NewRefresh is the input of CreateRefresh.
type NewRefresh struct {
	Hash      []byte // SHA-256 of the token
	FamilyID  string // empty starts a new family
	AccountID string
	DeviceID  string
	SessionID string
	ExpiresAt time.Time
}

const refreshCols = `hash, family_id, account_id, device_id, session_id, created_at, expires_at, used_at, revoked_at`

func scanRefresh(row interface{ Scan(...any) error }) (RefreshToken, error) {
	var t RefreshToken
	var created, expires, used, revoked int64
	if err := row.Scan(&t.Hash, &t.FamilyID, &t.AccountID, &t.DeviceID, &t.SessionID, &created, &expires, &used, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return RefreshToken{}, ErrNotFound
		}
		return RefreshToken{}, err
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt, t.RevokedAt = fromMicros(created), fromMicros(expires), fromMicros(used), fromMicros(revoked)
	return t, nil
}

func checkHash(h []byte) error {
	if len(h) != sha256.Size {
		return fmt.Errorf("hash is %d bytes, want %d: %w", len(h), sha256.Size, ErrInvalid)
	}
	return nil
}

// CreateRefresh stores a refresh token issued at login. The device must
// belong to the account and not be revoked.
func (db *DB) CreateRefresh(ctx context.Context, nr NewRefresh) (RefreshToken, error) {
	if err := checkHash(nr.Hash); err != nil {
		return RefreshToken{}, fmt.Errorf("store: create refresh: %w", err)
	}
	var t RefreshToken
	err := db.write(ctx, "create refresh", func(tx *sql.Tx) error {
		var revoked int64
		err := tx.QueryRowContext(ctx, `SELECT revoked_at FROM devices WHERE id = $1 AND account_id = $2`,
			nr.DeviceID, nr.AccountID).Scan(&revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device: %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		if revoked != 0 {
			return fmt.Errorf("device: %w", ErrRevoked)
		}
		now := db.now()
		family := nr.FamilyID
		if family == "" {
			family = newID(now)
		}
		t, err = scanRefresh(tx.QueryRowContext(ctx, `INSERT INTO refresh_tokens
			(hash, family_id, account_id, device_id, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
			RETURNING `+refreshCols, nr.Hash, family, nr.AccountID, nr.DeviceID, nr.SessionID, micros(now), micros(nr.ExpiresAt)))
		if isUnique(err) {
			return ErrDuplicate
		}
		return err
	})
	return t, err
}

// RotateRefresh exchanges the token hashed oldHash for a new one (newHash,
// expiring at newExpiry) in the same family, in one transaction, and
// returns the new token. Errors, checked in this order:
//   - ErrNotFound: no such token.
//   - ErrRefreshReuse: the token was already used; the whole family is
//     revoked (committed) before the error returns, which comes with the
//     reused token (its AccountID, DeviceID and SessionID name the revoked
//     login, whose connections the caller closes). Two concurrent
//     rotations of one token therefore end with one winner whose family is
//     then revoked by the loser: strict reuse detection, no grace period.
//   - ErrRevoked: the token, its family or its device was revoked.
//   - ErrExpired: the token expired.
func (db *DB) RotateRefresh(ctx context.Context, oldHash, newHash []byte, newExpiry time.Time) (RefreshToken, error) {
	if err := checkHash(oldHash); err != nil {
		return RefreshToken{}, fmt.Errorf("store: rotate refresh: old: %w", err)
	}
	if err := checkHash(newHash); err != nil {
		return RefreshToken{}, fmt.Errorf("store: rotate refresh: new: %w", err)
	}
	var t, reused RefreshToken
	err := db.write(ctx, "rotate refresh", func(tx *sql.Tx) error {
		reused = RefreshToken{}
		now := micros(db.now())
		// The conditional UPDATE is the single-use gate: of two concurrent
		// rotations, exactly one sees used_at = 0 (PostgreSQL re-checks the
		// WHERE clause after waiting for the row lock).
		old, err := scanRefresh(tx.QueryRowContext(ctx, `UPDATE refresh_tokens SET used_at = $1
			WHERE hash = $2 AND used_at = 0 AND revoked_at = 0 AND expires_at > $1 RETURNING `+refreshCols, now, oldHash))
		if errors.Is(err, ErrNotFound) {
			cur, err := scanRefresh(tx.QueryRowContext(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, oldHash))
			if err != nil {
				return err
			}
			switch {
			case !cur.UsedAt.IsZero():
				if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at = 0`,
					now, cur.FamilyID); err != nil {
					return fmt.Errorf("revoke family: %w", err)
				}
				reused = cur
				return commitThen{fmt.Errorf("store: rotate refresh: family %s: %w", cur.FamilyID, ErrRefreshReuse)}
			case !cur.RevokedAt.IsZero():
				return ErrRevoked
			default:
				return ErrExpired
			}
		}
		if err != nil {
			return err
		}
		t, err = scanRefresh(tx.QueryRowContext(ctx, `INSERT INTO refresh_tokens
			(hash, family_id, account_id, device_id, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
			RETURNING `+refreshCols, newHash, old.FamilyID, old.AccountID, old.DeviceID, old.SessionID, now, micros(newExpiry)))
		if isUnique(err) {
			return fmt.Errorf("new token: %w", ErrDuplicate)
		}
		return err
	})
	if errors.Is(err, ErrRefreshReuse) {
		// Drop a cached "live" answer now that the revocation committed.
		db.logins.invalidateKey(reused.FamilyID)
		db.revoked.addFamily(reused.FamilyID)
		return reused, err
	}
	return t, err
}

// RefreshByHash returns the stored token hashed h, in any state.
func (db *DB) RefreshByHash(ctx context.Context, h []byte) (RefreshToken, error) {
	t, err := scanRefresh(db.r.QueryRowContext(ctx, `SELECT `+refreshCols+` FROM refresh_tokens WHERE hash = $1`, h))
	if err != nil {
		return RefreshToken{}, fmt.Errorf("store: refresh by hash: %w", err)
	}
	return t, nil
}

// RevokeFamily revokes every token of a family (logout of one login). It
// reports ErrNotFound for an unknown family.
func (db *DB) RevokeFamily(ctx context.Context, familyID string) error {
	// Drop a cached "live" answer once the transaction is over, whatever
	// its outcome (see deviceCache).
	defer db.logins.invalidateKey(familyID)
	err := db.write(ctx, "revoke family", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1`, familyID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		_, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at = 0`,
			micros(db.now()), familyID)
		return err
	})
	if err == nil {
		db.revoked.addFamily(familyID) // refused from now on (revoked.go)
	}
	return err
}

// PairingCode is a short single-use code with which a device lets another
// device join its account. Only its hash is stored.
type PairingCode struct {
	Hash            []byte
	AccountID       string
	CreatedByDevice string
	CreatedAt       time.Time
	ExpiresAt       time.Time
	UsedAt          time.Time
}

const pairingCols = `hash, account_id, created_by_device, created_at, expires_at, used_at`

func scanPairing(row interface{ Scan(...any) error }) (PairingCode, error) {
	var p PairingCode
	var created, expires, used int64
	if err := row.Scan(&p.Hash, &p.AccountID, &p.CreatedByDevice, &created, &expires, &used); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return PairingCode{}, ErrNotFound
		}
		return PairingCode{}, err
	}
	p.CreatedAt, p.ExpiresAt, p.UsedAt = fromMicros(created), fromMicros(expires), fromMicros(used)
	return p, nil
}

// CreatePairingCode stores the hash of a pairing code (HashToken of the
// code; callers may use an HMAC instead since codes are short). A hash that
// is already stored answers ErrDuplicate, so the caller draws another code.
func (db *DB) CreatePairingCode(ctx context.Context, codeHash []byte, account, createdByDevice string, expiresAt time.Time) (PairingCode, error) {
	if err := checkHash(codeHash); err != nil {
		return PairingCode{}, fmt.Errorf("store: create pairing code: %w", err)
	}
	var p PairingCode
	err := db.write(ctx, "create pairing code", func(tx *sql.Tx) error {
		now := micros(db.now())
		// An expired code with the same hash is garbage: replace it.
		if _, err := tx.ExecContext(ctx, `DELETE FROM pairing_codes WHERE hash = $1 AND expires_at <= $2`, codeHash, now); err != nil {
			return err
		}
		var err error
		p, err = scanPairing(tx.QueryRowContext(ctx, `INSERT INTO pairing_codes
			(hash, account_id, created_by_device, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING `+pairingCols,
			codeHash, account, createdByDevice, now, micros(expiresAt)))
		if isUnique(err) {
			return ErrDuplicate
		}
		return err
	})
	return p, err
}

// ConsumePairingCode marks the code used and returns it; of concurrent
// consumers exactly one succeeds. A used or unknown code answers
// ErrNotFound (callers should not tell the two apart), an expired one
// ErrExpired.
func (db *DB) ConsumePairingCode(ctx context.Context, codeHash []byte) (PairingCode, error) {
	if err := checkHash(codeHash); err != nil {
		return PairingCode{}, fmt.Errorf("store: consume pairing code: %w", err)
	}
	var p PairingCode
	err := db.write(ctx, "consume pairing code", func(tx *sql.Tx) error {
		now := micros(db.now())
		var err error
		p, err = scanPairing(tx.QueryRowContext(ctx, `UPDATE pairing_codes SET used_at = $1
			WHERE hash = $2 AND used_at = 0 AND expires_at > $1 RETURNING `+pairingCols, now, codeHash))
		if errors.Is(err, ErrNotFound) {
			cur, cerr := scanPairing(tx.QueryRowContext(ctx, `SELECT `+pairingCols+` FROM pairing_codes WHERE hash = $1`, codeHash))
			if cerr == nil && cur.UsedAt.IsZero() {
				return ErrExpired
			}
		}
		return err
	})
	return p, err
}
