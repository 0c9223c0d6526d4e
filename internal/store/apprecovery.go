package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// App session recovery (internal/apps/recovery.go): fenced state moves
// that carry the session's timer, the due timers every node's recovery
// loop reads, and the claim a node makes of its sessions when it starts.

// AppSessionMove is a fenced change of an app session (MoveAppSession).
type AppSessionMove struct {
	// From lists the states the session must be in; empty: any but
	// stopped (stopped is final either way).
	From []string
	// Epoch, when not 0, is the epoch the session must have: a node that
	// read the session acts on it only if nobody claimed it since.
	Epoch int64
	// Claim makes Node the session's owner, bumping its epoch when the
	// owner changes.
	Claim bool
	Node  string

	State string    // the new state; empty: unchanged
	DueAt time.Time // the new timer; zero: none
	// KeepDue leaves the timer as it is (DueAt is ignored).
	KeepDue bool
	// RecoverSince and Attempts, when RecoverSince is not nil, restart or
	// continue the resurrection budget.
	RecoverSince *time.Time
	Attempts     int64
	// StopReason, Stage and Error replace the session's when SetFailure
	// is set (empty strings clear them), else when not empty.
	StopReason, Stage, Error string
	SetFailure               bool
	// TicketHash, when not empty, is a new single-use start ticket (a
	// resurrection's), unused, expiring at TicketExpiresAt.
	TicketHash      []byte
	TicketExpiresAt time.Time
}

// MoveAppSession applies mv to session id if its fences hold, and returns
// the session with whether it changed. ErrNotFound for an unknown session.
func (db *DB) MoveAppSession(ctx context.Context, id string, mv AppSessionMove) (s AppSession, changed bool, err error) {
	err = db.write(ctx, "move app session", func(tx *sql.Tx) error {
		changed = false
		cur, err := scanAppSession(tx.QueryRowContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions WHERE id = $1`, id))
		if err != nil {
			return err
		}
		s = cur
		if cur.State == "stopped" || (mv.Epoch != 0 && cur.Epoch != mv.Epoch) {
			return nil
		}
		if len(mv.From) > 0 {
			ok := false
			for _, f := range mv.From {
				ok = ok || cur.State == f
			}
			if !ok {
				return nil
			}
		}
		next := cur
		if mv.State != "" {
			next.State = mv.State
		}
		if !mv.KeepDue {
			next.DueAt = mv.DueAt
		}
		if mv.RecoverSince != nil {
			next.RecoverSince, next.Attempts = *mv.RecoverSince, mv.Attempts
		}
		if mv.SetFailure {
			next.StopReason, next.Stage, next.Error = mv.StopReason, mv.Stage, mv.Error
		} else {
			if mv.StopReason != "" {
				next.StopReason = mv.StopReason
			}
			if mv.Stage != "" {
				next.Stage = mv.Stage
			}
			if mv.Error != "" {
				next.Error = mv.Error
			}
		}
		if mv.Claim && cur.Node != mv.Node {
			next.Node, next.Epoch = mv.Node, cur.Epoch+1
		}
		if len(mv.TicketHash) > 0 {
			next.TicketHash, next.TicketExpiresAt, next.TicketUsedAt = mv.TicketHash, mv.TicketExpiresAt, time.Time{}
		}
		// The epoch read above fences the write too: a claim by another
		// node in between makes it change nothing.
		s, changed, err = updateAppSession(ctx, tx, id, `UPDATE app_sessions SET state = $1, due_at = $2, recover_since = $3, attempts = $4,
			stop_reason = $5, stage = $6, error = $7, node = $8, epoch = $9, ticket_hash = $10, ticket_expires_at = $11,
			ticket_used_at = $12, updated_at = $13 WHERE id = $14 AND epoch = $15 AND state = $16`,
			next.State, micros(next.DueAt), micros(next.RecoverSince), next.Attempts, next.StopReason, next.Stage, next.Error,
			next.Node, next.Epoch, next.TicketHash, micros(next.TicketExpiresAt), micros(next.TicketUsedAt), micros(db.now()),
			id, cur.Epoch, cur.State)
		return err
	})
	if err != nil {
		return AppSession{}, false, fmt.Errorf("store: move app session: %w", err)
	}
	return s, changed, nil
}

// DueAppSessions returns up to limit sessions that are not running or
// stopped and whose timer is due at now, oldest timer first: node's own,
// and any node's whose timer is due since orphanedBefore (its node did
// not act: it is gone).
func (db *DB) DueAppSessions(ctx context.Context, now time.Time, node string, orphanedBefore time.Time, limit int) ([]AppSession, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions
		WHERE due_at > 0 AND due_at <= $1 AND state IN ('starting', 'transport_down', 'resurrecting', 'dormant')
		AND (node = $2 OR due_at <= $3) ORDER BY due_at, id LIMIT $4`, micros(now), node, micros(orphanedBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due app sessions: %w", err)
	}
	out, err := collect(rows, scanAppSession)
	if err != nil {
		return nil, fmt.Errorf("store: due app sessions: %w", err)
	}
	return out, nil
}

// ClaimAppSessions makes node the owner of the sessions that are not
// stopped and were node's (every node's when all is set: a node that is
// the only one), bumping their epochs: a node does it when it starts. A
// claimed session that was running lost its app's connection with the
// previous process: it moves to transport_down with its grace ending at
// graceEnd. It returns how many sessions it claimed.
func (db *DB) ClaimAppSessions(ctx context.Context, node string, all bool, graceEnd time.Time) (int64, error) {
	var n int64
	err := db.write(ctx, "claim app sessions", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE app_sessions SET
			due_at = CASE WHEN state = 'running' THEN $1 ELSE due_at END,
			state = CASE WHEN state = 'running' THEN 'transport_down' ELSE state END,
			node = $2, epoch = epoch + 1, updated_at = $3
			WHERE state <> 'stopped' AND ($4 = 1 OR node = $2)`, micros(graceEnd), node, micros(db.now()), boolInt(all))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: claim app sessions: %w", err)
	}
	return n, nil
}

// AppSessionsInState returns up to limit sessions of every app in state
// with ids after after, in id order (a node's sweep of its dormant
// sessions when it lost track of the devices that came back).
func (db *DB) AppSessionsInState(ctx context.Context, state, after string, limit int) ([]AppSession, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions WHERE state = $1 AND id > $2 ORDER BY id LIMIT $3`, state, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: app sessions in state: %w", err)
	}
	out, err := collect(rows, scanAppSession)
	if err != nil {
		return nil, fmt.Errorf("store: app sessions in state: %w", err)
	}
	return out, nil
}
