package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Versioned is an encrypted field and its version. Version starts at 1 when
// the object is created and grows by one with each accepted update of that
// field; each field of an object has its own version, so two devices
// updating different fields never conflict.
type Versioned struct {
	// Value is opaque ciphertext, stored and returned as given.
	Value []byte `json:"value"`
	// Version is the field's version.
	Version int64 `json:"version"`
}

// Page selects one page of a list ordered by id, newest first. The zero
// value is the first page of DefaultPageLimit items.
type Page struct {
	// Cursor is the opaque Next of the previous page; empty for the first.
	Cursor string
	// Limit is the page size: <= 0 means DefaultPageLimit; at most
	// MaxPageLimit.
	Limit int
}

func (p Page) limit() (int, error) {
	switch {
	case p.Limit <= 0:
		return DefaultPageLimit, nil
	case p.Limit > MaxPageLimit:
		return 0, fmt.Errorf("limit %d over %d: %w", p.Limit, MaxPageLimit, ErrInvalid)
	}
	return p.Limit, nil
}

// cursors are base64url of "o:" + the last id returned; opaque to clients.
func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + id))
}

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 3 || string(b[:2]) != "o:" {
		return "", fmt.Errorf("cursor %q: %w", c, ErrInvalid)
	}
	return string(b[2:]), nil
}

// objectTable describes one versioned encrypted object type (sessions,
// machines, artifacts): a table with account_id, two encrypted fields each
// with a <col>_version column, created_at and updated_at.
type objectTable struct {
	table  string       // SQL table
	kind   string       // update kind prefix and error step name
	fields [2]fieldDesc // the two encrypted fields
	extra  string       // a BIGINT column (or "0") scanned into object.Extra
}

type fieldDesc struct {
	col  string // SQL column; its version is col+"_version"
	json string // name in update bodies
}

var (
	sessionsTable  = objectTable{"sessions", "session", [2]fieldDesc{{"metadata", "metadata"}, {"agent_state", "agentState"}}, "msg_seq"}
	machinesTable  = objectTable{"machines", "machine", [2]fieldDesc{{"metadata", "metadata"}, {"daemon_state", "daemonState"}}, "0"}
	artifactsTable = objectTable{"artifacts", "artifact", [2]fieldDesc{{"header", "header"}, {"body", "body"}}, "0"}
)

// object is the dialect-neutral row of an objectTable.
type object struct {
	ID        string
	AccountID string
	F         [2]Versioned
	CreatedAt time.Time
	UpdatedAt time.Time
	Extra     int64 // sessions: last message seq
}

func (t objectTable) cols() string {
	return `id, account_id, ` + t.fields[0].col + `, ` + t.fields[0].col + `_version, ` +
		t.fields[1].col + `, ` + t.fields[1].col + `_version, created_at, updated_at, ` + t.extra
}

func scanObject(row interface{ Scan(...any) error }) (object, error) {
	var o object
	var created, updated int64
	if err := row.Scan(&o.ID, &o.AccountID, &o.F[0].Value, &o.F[0].Version, &o.F[1].Value, &o.F[1].Version, &created, &updated, &o.Extra); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return object{}, ErrNotFound
		}
		return object{}, err
	}
	o.CreatedAt, o.UpdatedAt = fromMicros(created), fromMicros(updated)
	return o, nil
}

// create inserts an object with both fields at version 1. body turns the
// new object into the created update's body.
func (db *DB) createObject(ctx context.Context, t objectTable, account string, a, b []byte, body func(object) any) (object, []Update, error) {
	step := "create " + t.kind
	if err := db.checkSize(t.kind+" "+t.fields[0].json, a); err != nil {
		return object{}, nil, err
	}
	if err := db.checkSize(t.kind+" "+t.fields[1].json, b); err != nil {
		return object{}, nil, err
	}
	var o object
	var ups []Update
	err := db.write(ctx, step, func(tx *sql.Tx) error {
		now := micros(db.now())
		var err error
		o, err = scanObject(tx.QueryRowContext(ctx, `INSERT INTO `+t.table+` (id, account_id, `+
			t.fields[0].col+`, `+t.fields[0].col+`_version, `+t.fields[1].col+`, `+t.fields[1].col+`_version, created_at, updated_at)
			VALUES ($1, $2, $3, 1, $4, 1, $5, $5) RETURNING `+t.cols(), newID(db.now()), account, nonNil(a), nonNil(b), now))
		if err != nil {
			if isForeignKey(err) {
				return fmt.Errorf("account %s: %w", account, ErrNotFound)
			}
			return fmt.Errorf("insert: %w", err)
		}
		u, err := newUpdate(t.kind+".created", o.ID, 1, body(o))
		if err != nil {
			return err
		}
		ups, err = db.emit(ctx, tx, account, []Update{u})
		return err
	})
	if err != nil {
		return object{}, nil, err
	}
	return o, ups, nil
}

func (db *DB) getObject(ctx context.Context, t objectTable, account, id string) (object, error) {
	o, err := scanObject(db.r.QueryRowContext(ctx, `SELECT `+t.cols()+` FROM `+t.table+` WHERE id = $1 AND account_id = $2`, id, account))
	if err != nil {
		return object{}, fmt.Errorf("store: %s: %w", t.kind, err)
	}
	return o, nil
}

// listObjects returns one page of account's objects, newest id first, and
// the cursor of the next page ("" when this is the last).
func (db *DB) listObjects(ctx context.Context, t objectTable, account string, p Page) ([]object, string, error) {
	step := "list " + t.table
	limit, err := p.limit()
	if err != nil {
		return nil, "", fmt.Errorf("store: %s: %w", step, err)
	}
	q := `SELECT ` + t.cols() + ` FROM ` + t.table + ` WHERE account_id = $1`
	args := []any{account, limit + 1}
	if p.Cursor != "" {
		after, err := decodeCursor(p.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: %s: %w", step, err)
		}
		q += ` AND id < $3`
		args = append(args, after)
	}
	q += ` ORDER BY id DESC LIMIT $2`
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: %s: %w", step, err)
	}
	defer rows.Close()
	var os []object
	for rows.Next() {
		o, err := scanObject(rows)
		if err != nil {
			return nil, "", fmt.Errorf("store: %s: %w", step, err)
		}
		os = append(os, o)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: %s: %w", step, err)
	}
	next := ""
	if len(os) > limit {
		os = os[:limit]
		next = encodeCursor(os[limit-1].ID)
	}
	return os, next, nil
}

// updateField sets field f of an object if its version is expected, bumping
// the version; otherwise *ConflictError with the current version and value.
func (db *DB) updateField(ctx context.Context, t objectTable, f int, account, id string, expected int64, value []byte) (object, []Update, error) {
	fd := t.fields[f]
	step := "update " + t.kind + " " + fd.json
	if err := db.checkSize(t.kind+" "+fd.json, value); err != nil {
		return object{}, nil, err
	}
	var o object
	var ups []Update
	err := db.write(ctx, step, func(tx *sql.Tx) error {
		var err error
		// The UPDATE takes the row lock; PostgreSQL re-checks the version
		// after waiting for a concurrent writer, so exactly one of two
		// updates with the same expected version wins.
		o, err = scanObject(tx.QueryRowContext(ctx, `UPDATE `+t.table+` SET `+fd.col+` = $1, `+fd.col+`_version = `+fd.col+`_version + 1,
			updated_at = $2 WHERE id = $3 AND account_id = $4 AND `+fd.col+`_version = $5 RETURNING `+t.cols(),
			nonNil(value), micros(db.now()), id, account, expected))
		if errors.Is(err, ErrNotFound) {
			ce := &ConflictError{}
			err := tx.QueryRowContext(ctx, `SELECT `+fd.col+`, `+fd.col+`_version FROM `+t.table+` WHERE id = $1 AND account_id = $2`,
				id, account).Scan(&ce.Value, &ce.Current)
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			if err != nil {
				return err
			}
			return ce
		}
		if err != nil {
			return err
		}
		u, err := newUpdate(t.kind+".updated", o.ID, o.F[f].Version, map[string]any{"id": o.ID, fd.json: o.F[f]})
		if err != nil {
			return err
		}
		ups, err = db.emit(ctx, tx, account, []Update{u})
		return err
	})
	if err != nil {
		return object{}, nil, err
	}
	return o, ups, nil
}

// deleteObject deletes an object (and, by cascade, what hangs off it).
func (db *DB) deleteObject(ctx context.Context, t objectTable, account, id string) ([]Update, error) {
	var ups []Update
	err := db.write(ctx, "delete "+t.kind, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+t.table+` WHERE id = $1 AND account_id = $2`, id, account)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		u, err := newUpdate(t.kind+".deleted", id, 0, map[string]string{"id": id})
		if err != nil {
			return err
		}
		ups, err = db.emit(ctx, tx, account, []Update{u})
		return err
	})
	return ups, err
}
