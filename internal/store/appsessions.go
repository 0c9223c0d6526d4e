package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The apps platform's webhook secrets and app sessions. Secrets arrive
// sealed (internal/apps encrypts them); the store keeps bytes.

// AppWebhook is an app's webhook configuration: whether it is internal and
// its sealed signing secrets.
type AppWebhook struct {
	AppID     string
	Internal  bool
	Sealed    []byte    // the current secret, sealed
	Prev      []byte    // the previous secret, sealed; empty when none
	PrevUntil time.Time // the previous secret signs until then
	UpdatedAt time.Time
}

// PutAppWebhook stores an app's webhook secret, keeping the current one as
// the previous until prevUntil (zero: drop it). internal is kept when
// setInternal is false. ErrNotFound for an unknown app.
func (db *DB) PutAppWebhook(ctx context.Context, appID string, sealed []byte, prevUntil time.Time, internal, setInternal bool) (AppWebhook, error) {
	var out AppWebhook
	err := db.write(ctx, "put app webhook", func(tx *sql.Tx) error {
		now := micros(db.now())
		old, err := scanAppWebhook(tx.QueryRowContext(ctx, `SELECT app_id, internal, sealed, prev, prev_until, updated_at FROM app_webhooks WHERE app_id = $1`, appID))
		switch {
		case errors.Is(err, ErrNotFound):
			if _, err := tx.ExecContext(ctx, `INSERT INTO app_webhooks (app_id, internal, sealed, prev, prev_until, updated_at) VALUES ($1, $2, $3, $4, 0, $5)`,
				appID, boolInt(internal), sealed, []byte{}, now); err != nil {
				if isForeignKey(err) {
					return ErrNotFound
				}
				return err
			}
		case err != nil:
			return err
		default:
			prev, until := old.Sealed, micros(prevUntil)
			if prevUntil.IsZero() {
				prev, until = []byte{}, 0
			}
			if !setInternal {
				internal = old.Internal
			}
			if _, err := tx.ExecContext(ctx, `UPDATE app_webhooks SET internal = $1, sealed = $2, prev = $3, prev_until = $4, updated_at = $5 WHERE app_id = $6`,
				boolInt(internal), sealed, prev, until, now, appID); err != nil {
				return err
			}
		}
		out, err = scanAppWebhook(tx.QueryRowContext(ctx, `SELECT app_id, internal, sealed, prev, prev_until, updated_at FROM app_webhooks WHERE app_id = $1`, appID))
		return err
	})
	if err != nil {
		return AppWebhook{}, fmt.Errorf("store: put app webhook: %w", err)
	}
	return out, nil
}

// AppWebhookOf returns an app's webhook configuration, or ErrNotFound.
func (db *DB) AppWebhookOf(ctx context.Context, appID string) (AppWebhook, error) {
	w, err := scanAppWebhook(db.r.QueryRowContext(ctx, `SELECT app_id, internal, sealed, prev, prev_until, updated_at FROM app_webhooks WHERE app_id = $1`, appID))
	if err != nil {
		return AppWebhook{}, fmt.Errorf("store: app webhook: %w", err)
	}
	return w, nil
}

func scanAppWebhook(row scanner) (AppWebhook, error) {
	var w AppWebhook
	var internal, until, updated int64
	if err := row.Scan(&w.AppID, &internal, &w.Sealed, &w.Prev, &until, &updated); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return AppWebhook{}, ErrNotFound
		}
		return AppWebhook{}, err
	}
	w.Internal, w.PrevUntil, w.UpdatedAt = internal != 0, fromMicros(until), fromMicros(updated)
	return w, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// AppSession is one app running for one user's device.
type AppSession struct {
	ID              string
	AppID           string
	UserID          string
	DeviceID        string
	Kind            string // the app's kind when the session started
	State           string // starting, running, transport_down, resurrecting, dormant, stopped
	Capabilities    []string
	TicketHash      []byte
	TicketExpiresAt time.Time
	TicketUsedAt    time.Time
	ResumeHash      string // hex SHA-256 of the latest resume token; empty before the first
	StopReason      string
	Stage           string // the failure's stage, when it failed
	Error           string
	Node            string
	Epoch           int64
	CreatedAt       time.Time
	UpdatedAt       time.Time
	// Recovery (apprecovery.go): the next timer (zero: none), the start
	// of the resurrection budget and the attempts made since.
	DueAt        time.Time
	RecoverSince time.Time
	Attempts     int64
}

const appSessionCols = `id, app_id, user_id, device_id, kind, state, capabilities, ticket_hash, ticket_expires_at, ticket_used_at, resume_hash, stop_reason, stage, error, node, epoch, created_at, updated_at, due_at, recover_since, attempts`

func scanAppSession(row scanner) (AppSession, error) {
	var s AppSession
	var caps string
	var texp, tused, created, updated, due, since int64
	if err := row.Scan(&s.ID, &s.AppID, &s.UserID, &s.DeviceID, &s.Kind, &s.State, &caps, &s.TicketHash, &texp, &tused, &s.ResumeHash,
		&s.StopReason, &s.Stage, &s.Error, &s.Node, &s.Epoch, &created, &updated, &due, &since, &s.Attempts); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return AppSession{}, ErrNotFound
		}
		return AppSession{}, err
	}
	if err := json.Unmarshal([]byte(caps), &s.Capabilities); err != nil {
		return AppSession{}, fmt.Errorf("app session %s: capabilities: %w", s.ID, err)
	}
	s.TicketExpiresAt, s.TicketUsedAt = fromMicros(texp), fromMicros(tused)
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	s.DueAt, s.RecoverSince = fromMicros(due), fromMicros(since)
	return s, nil
}

// CreateAppSession inserts a session. ErrNotFound for an unknown app.
func (db *DB) CreateAppSession(ctx context.Context, s AppSession) (AppSession, error) {
	if s.ID == "" || s.AppID == "" || s.UserID == "" || s.DeviceID == "" || s.State == "" || len(s.TicketHash) == 0 {
		return AppSession{}, fmt.Errorf("store: create app session: id, app, user, device, state and ticket are required: %w", ErrInvalid)
	}
	var out AppSession
	err := db.write(ctx, "create app session", func(tx *sql.Tx) error {
		now := micros(db.now())
		var err error
		out, err = scanAppSession(tx.QueryRowContext(ctx, `INSERT INTO app_sessions (`+appSessionCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, '', '', '', '', $10, 1, $11, $12, $13, 0, 0) RETURNING `+appSessionCols,
			s.ID, s.AppID, s.UserID, s.DeviceID, s.Kind, s.State, jsonList(s.Capabilities), s.TicketHash, micros(s.TicketExpiresAt), s.Node, now, now, micros(s.DueAt)))
		switch {
		case isForeignKey(err):
			return ErrNotFound
		case isUnique(err):
			return ErrDuplicate
		}
		return err
	})
	return out, err
}

// AppSessionByID returns a session, or ErrNotFound.
func (db *DB) AppSessionByID(ctx context.Context, id string) (AppSession, error) {
	s, err := scanAppSession(db.r.QueryRowContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions WHERE id = $1`, id))
	if err != nil {
		return AppSession{}, fmt.Errorf("store: app session: %w", err)
	}
	return s, nil
}

// ErrTicketUsed: a start ticket was presented a second time.
var ErrTicketUsed = errors.New("store: ticket already used")

// UseAppSessionTicket marks a session's ticket used at now and the session
// running, once: a second call returns ErrTicketUsed, and a session that is
// no longer starting (or resurrecting: a resurrection's ticket) ErrConflict.
// Its timer and the last recovery failure are cleared. The caller has
// checked the ticket's hash and expiry.
func (db *DB) UseAppSessionTicket(ctx context.Context, id string, now time.Time) (AppSession, error) {
	var out AppSession
	err := db.write(ctx, "use app session ticket", func(tx *sql.Tx) error {
		var changed bool
		var err error
		out, changed, err = updateAppSession(ctx, tx, id, `UPDATE app_sessions SET ticket_used_at = $1, state = 'running', updated_at = $1,
			due_at = 0, recover_since = 0, attempts = 0, stage = '', error = ''
			WHERE id = $2 AND ticket_used_at = 0 AND state IN ('starting', 'resurrecting')`, micros(now), id)
		if err != nil {
			return err
		}
		if !changed {
			if !out.TicketUsedAt.IsZero() {
				return ErrTicketUsed
			}
			return ErrConflict
		}
		return nil
	})
	return out, err
}

// SetAppSessionState moves a session to state, unless it is stopped
// already (stopped is final) or, when from is not empty, in another state
// than from: then it returns the session unchanged with changed false.
// stopReason, stage and msg are written when not empty.
func (db *DB) SetAppSessionState(ctx context.Context, id, from, state, stopReason, stage, msg string) (s AppSession, changed bool, err error) {
	err = db.write(ctx, "set app session state", func(tx *sql.Tx) error {
		changed = false
		var err error
		s, changed, err = updateAppSession(ctx, tx, id, `UPDATE app_sessions SET state = $1,
			stop_reason = CASE WHEN $2 = '' THEN stop_reason ELSE $2 END,
			stage = CASE WHEN $3 = '' THEN stage ELSE $3 END,
			error = CASE WHEN $4 = '' THEN error ELSE $4 END,
			updated_at = $5 WHERE id = $6 AND state <> 'stopped' AND ($7 = '' OR state = $7)`, state, stopReason, stage, msg, micros(db.now()), id, from)
		return err
	})
	if err != nil {
		return AppSession{}, false, fmt.Errorf("store: set app session state: %w", err)
	}
	return s, changed, nil
}

// ActiveAppSessionsOfDevice returns a device's sessions that are not
// stopped, oldest first.
func (db *DB) ActiveAppSessionsOfDevice(ctx context.Context, deviceID string) ([]AppSession, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions WHERE device_id = $1 AND state <> 'stopped' ORDER BY created_at, id`, deviceID)
	if err != nil {
		return nil, fmt.Errorf("store: app sessions of device: %w", err)
	}
	out, err := collect(rows, scanAppSession)
	if err != nil {
		return nil, fmt.Errorf("store: app sessions of device: %w", err)
	}
	return out, nil
}

// MaxDevicesPerQuery bounds the devices one AppSessionsOfDevicesInState
// names (one placeholder each).
const MaxDevicesPerQuery = 256

// AppSessionsOfDevicesInState returns the sessions in state of the devices
// listed (at most MaxDevicesPerQuery), in id order: the dormant sessions a
// node revives when those devices connect, read once for a burst of
// connections rather than once per device.
//
// The list is one parameter (a PostgreSQL array; a JSON array that SQLite's
// json_each unrolls), so the statement's text is the same for every burst:
// with a placeholder per device, SQLite parsed a statement of ~60
// placeholders for every burst (the pure Go driver parses on every
// execution, prepared or not), most of the query's cost at thousands of
// connects a second (BENCHMARKS.md, "Connect pass"). Both plans probe the
// (device_id, state) index once per device.
func (db *DB) AppSessionsOfDevicesInState(ctx context.Context, state string, deviceIDs []string) ([]AppSession, error) {
	if len(deviceIDs) == 0 {
		return nil, nil
	}
	if len(deviceIDs) > MaxDevicesPerQuery {
		return nil, fmt.Errorf("store: app sessions of devices: %d devices, at most %d", len(deviceIDs), MaxDevicesPerQuery)
	}
	q := `SELECT ` + appSessionCols + ` FROM app_sessions WHERE state = $1 AND device_id `
	var rows *sql.Rows
	var err error
	if db.dialect == dialectPostgres {
		rows, err = db.r.QueryContext(ctx, q+`= ANY($2) ORDER BY id`, pgx.QueryExecModeCacheDescribe, state, deviceIDs)
	} else {
		var list []byte
		if list, err = json.Marshal(deviceIDs); err != nil {
			return nil, fmt.Errorf("store: app sessions of devices: %w", err)
		}
		rows, err = db.r.QueryContext(ctx, q+`IN (SELECT value FROM json_each($2)) ORDER BY id`, state, string(list))
	}
	if err != nil {
		return nil, fmt.Errorf("store: app sessions of devices: %w", err)
	}
	out, err := collect(rows, scanAppSession)
	if err != nil {
		return nil, fmt.Errorf("store: app sessions of devices: %w", err)
	}
	return out, nil
}

// AppSessionsOfApp returns up to limit of an app's sessions in state (""
// for any) with ids after after, in id order, and whether more follow.
func (db *DB) AppSessionsOfApp(ctx context.Context, appID, state, after string, limit int) ([]AppSession, bool, error) {
	n, err := Page{Limit: limit}.limit()
	if err != nil {
		return nil, false, fmt.Errorf("store: app sessions: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions
		WHERE app_id = $1 AND ($2 = '' OR state = $2) AND id > $3 ORDER BY id LIMIT $4`, appID, state, after, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: app sessions: %w", err)
	}
	out, err := collect(rows, scanAppSession)
	if err != nil {
		return nil, false, fmt.Errorf("store: app sessions: %w", err)
	}
	if len(out) > n {
		return out[:n], true, nil
	}
	return out, false, nil
}

// ActiveAppSessionsOfUser returns the sessions of an app for a user that
// are not stopped, oldest first.
func (db *DB) ActiveAppSessionsOfUser(ctx context.Context, appID, userID string) ([]AppSession, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions
		WHERE app_id = $1 AND user_id = $2 AND state <> 'stopped' ORDER BY created_at, id`, appID, userID)
	if err != nil {
		return nil, fmt.Errorf("store: app sessions of user: %w", err)
	}
	out, err := collect(rows, scanAppSession)
	if err != nil {
		return nil, fmt.Errorf("store: app sessions of user: %w", err)
	}
	return out, nil
}

// SetAppSessionResume records the hash of a session's latest resume token
// (the previous one stops working). ErrNotFound for an unknown session.
func (db *DB) SetAppSessionResume(ctx context.Context, id, hash string) error {
	return db.write(ctx, "set app session resume", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE app_sessions SET resume_hash = $1 WHERE id = $2`, hash, id)
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

// updateAppSession runs query, an UPDATE of session id, in tx and reads the
// session back; changed reports whether the UPDATE matched its row.
func updateAppSession(ctx context.Context, tx *sql.Tx, id, query string, args ...any) (s AppSession, changed bool, err error) {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return AppSession{}, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return AppSession{}, false, err
	}
	s, err = scanAppSession(tx.QueryRowContext(ctx, `SELECT `+appSessionCols+` FROM app_sessions WHERE id = $1`, id))
	return s, n > 0, err
}
