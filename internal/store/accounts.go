package store

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Account is a user, identified by an ed25519 public key.
type Account struct {
	// ID is the server-generated account id.
	ID string `json:"id"`
	// PublicKey is the account's ed25519 public key, unique.
	PublicKey ed25519.PublicKey `json:"publicKey"`
	// CreatedAt is when the account was created.
	CreatedAt time.Time `json:"createdAt"`
}

func checkPublicKey(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("public key is %d bytes, want %d: %w", len(pub), ed25519.PublicKeySize, ErrInvalid)
	}
	return nil
}

// AccountForKey returns the account of pub, creating it if there is none;
// created reports which. Concurrent calls with one key yield one account.
func (db *DB) AccountForKey(ctx context.Context, pub ed25519.PublicKey) (acct Account, created bool, err error) {
	if err := checkPublicKey(pub); err != nil {
		return Account{}, false, fmt.Errorf("store: account for key: %w", err)
	}
	err = db.write(ctx, "account for key", func(tx *sql.Tx) error {
		now := db.now()
		acct = Account{ID: newID(now), PublicKey: pub, CreatedAt: fromMicros(micros(now))}
		// ON CONFLICT DO NOTHING waits for a concurrent inserter of the same
		// key and then inserts nothing; the SELECT then sees its row.
		err := tx.QueryRowContext(ctx, `INSERT INTO accounts (id, public_key, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (public_key) DO NOTHING RETURNING id`, acct.ID, []byte(pub), micros(now)).Scan(&acct.ID)
		if err == nil {
			created = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		created = false
		acct, err = scanAccount(tx.QueryRowContext(ctx, `SELECT id, public_key, created_at FROM accounts WHERE public_key = $1`, []byte(pub)))
		return err
	})
	return acct, created, err
}

// CreateAccount creates an account for pub; ErrDuplicate if one exists.
func (db *DB) CreateAccount(ctx context.Context, pub ed25519.PublicKey) (Account, error) {
	acct, created, err := db.AccountForKey(ctx, pub)
	if err != nil {
		return Account{}, err
	}
	if !created {
		return Account{}, fmt.Errorf("store: create account: %w", ErrDuplicate)
	}
	return acct, nil
}

// Account returns the account with id.
func (db *DB) Account(ctx context.Context, id string) (Account, error) {
	acct, err := scanAccount(db.r.QueryRowContext(ctx, `SELECT id, public_key, created_at FROM accounts WHERE id = $1`, id))
	if err != nil {
		return Account{}, fmt.Errorf("store: account: %w", err)
	}
	return acct, nil
}

// AccountByPublicKey returns the account of pub.
func (db *DB) AccountByPublicKey(ctx context.Context, pub ed25519.PublicKey) (Account, error) {
	acct, err := scanAccount(db.r.QueryRowContext(ctx, `SELECT id, public_key, created_at FROM accounts WHERE public_key = $1`, []byte(pub)))
	if err != nil {
		return Account{}, fmt.Errorf("store: account by public key: %w", err)
	}
	return acct, nil
}

func scanAccount(row *sql.Row) (Account, error) {
	var a Account
	var pub []byte
	var created int64
	if err := row.Scan(&a.ID, &pub, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Account{}, ErrNotFound
		}
		return Account{}, err
	}
	a.PublicKey = pub
	a.CreatedAt = fromMicros(created)
	return a, nil
}

// Device is one of an account's devices (phone, browser, machine, ...).
type Device struct {
	// ID is the server-generated device id (the "dev" token claim).
	ID string `json:"id"`
	// AccountID owns the device.
	AccountID string `json:"accountId"`
	// Kind is the device kind (phone, tablet, tv, glasses, browser,
	// machine, iot); the store does not interpret it.
	Kind string `json:"kind"`
	// Name is a human label.
	Name string `json:"name"`
	// PublicKey is the device's own key, if it has one.
	PublicKey []byte `json:"publicKey,omitempty"`
	// PushToken is the platform push token; never part of update bodies.
	PushToken string `json:"-"`
	// Version starts at 1 and grows with each rename, push token change or
	// revocation.
	Version int64 `json:"version"`
	// CreatedAt is when the device was registered.
	CreatedAt time.Time `json:"createdAt"`
	// LastSeenAt is the last TouchDevice time; zero if never.
	LastSeenAt time.Time `json:"lastSeenAt,omitzero"`
	// RevokedAt is when the device was revoked; zero if it is not.
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// Revoked reports whether the device has been revoked.
func (d Device) Revoked() bool { return !d.RevokedAt.IsZero() }

// NewDevice is the input of CreateDevice.
type NewDevice struct {
	Kind      string
	Name      string
	PublicKey []byte // optional
	PushToken string // optional
}

const (
	maxNameBytes  = 256
	maxTokenBytes = 4096
	deviceCols    = `id, account_id, kind, name, public_key, push_token, version, created_at, last_seen_at, revoked_at`
)

func scanDevice(row interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var created, seen, revoked int64
	if err := row.Scan(&d.ID, &d.AccountID, &d.Kind, &d.Name, &d.PublicKey, &d.PushToken, &d.Version, &created, &seen, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Device{}, ErrNotFound
		}
		return Device{}, err
	}
	if len(d.PublicKey) == 0 {
		d.PublicKey = nil
	}
	d.CreatedAt, d.LastSeenAt, d.RevokedAt = fromMicros(created), fromMicros(seen), fromMicros(revoked)
	return d, nil
}

// CreateDevice registers a device for account.
func (db *DB) CreateDevice(ctx context.Context, account string, nd NewDevice) (Device, []Update, error) {
	switch {
	case nd.Kind == "" || len(nd.Kind) > maxNameBytes:
		return Device{}, nil, fmt.Errorf("store: create device: kind %q: %w", nd.Kind, ErrInvalid)
	case len(nd.Name) > maxNameBytes:
		return Device{}, nil, fmt.Errorf("store: create device: name over %d bytes: %w", maxNameBytes, ErrInvalid)
	case len(nd.PublicKey) > maxTokenBytes || len(nd.PushToken) > maxTokenBytes:
		return Device{}, nil, fmt.Errorf("store: create device: key or push token over %d bytes: %w", maxTokenBytes, ErrTooLarge)
	}
	var d Device
	var ups []Update
	err := db.write(ctx, "create device", func(tx *sql.Tx) error {
		now := db.now()
		var pub any // NULL when absent
		if len(nd.PublicKey) > 0 {
			pub = nd.PublicKey
		}
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, `INSERT INTO devices
			(id, account_id, kind, name, public_key, push_token, version, created_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
			RETURNING `+deviceCols, newID(now), account, nd.Kind, nd.Name, pub, nd.PushToken, micros(now)))
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		u, err := newUpdate(KindDeviceCreated, d.ID, d.Version, d)
		if err != nil {
			return err
		}
		ups, err = db.emit(ctx, tx, account, []Update{u})
		return err
	})
	if err != nil {
		return Device{}, nil, err
	}
	db.devices.invalidate(account, d.ID)
	return d, ups, nil
}

// Device returns one of account's devices, revoked or not.
func (db *DB) Device(ctx context.Context, account, id string) (Device, error) {
	st, err := db.prepared(ctx, db.r, `SELECT `+deviceCols+` FROM devices WHERE id = $1 AND account_id = $2`)
	if err != nil {
		return Device{}, fmt.Errorf("store: device: %w", err)
	}
	d, err := scanDevice(st.QueryRowContext(ctx, id, account))
	if err != nil {
		return Device{}, fmt.Errorf("store: device: %w", err)
	}
	return d, nil
}

// Devices lists account's devices, revoked ones included, by id (creation
// order). Accounts have few devices, so there is no pagination.
func (db *DB) Devices(ctx context.Context, account string) ([]Device, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE account_id = $1 ORDER BY id`, account)
	if err != nil {
		return nil, fmt.Errorf("store: devices: %w", err)
	}
	defer rows.Close()
	var ds []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: devices: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: devices: %w", err)
	}
	return ds, nil
}

// RenameDevice sets a device's name; ErrRevoked for a revoked device.
func (db *DB) RenameDevice(ctx context.Context, account, id, name string) (Device, []Update, error) {
	if len(name) > maxNameBytes {
		return Device{}, nil, fmt.Errorf("store: rename device: name over %d bytes: %w", maxNameBytes, ErrInvalid)
	}
	return db.changeDevice(ctx, "rename device", account, id, `name = $4`, name)
}

// SetDevicePushToken sets (or clears, with "") a device's push token.
func (db *DB) SetDevicePushToken(ctx context.Context, account, id, token string) (Device, []Update, error) {
	if len(token) > maxTokenBytes {
		return Device{}, nil, fmt.Errorf("store: set push token: over %d bytes: %w", maxTokenBytes, ErrTooLarge)
	}
	return db.changeDevice(ctx, "set push token", account, id, `push_token = $4`, token)
}

// changeDevice applies set (which uses $4 = arg) to a live device, bumps its
// version and emits device.updated.
func (db *DB) changeDevice(ctx context.Context, step, account, id, set string, arg any) (Device, []Update, error) {
	var d Device
	var ups []Update
	err := db.write(ctx, step, func(tx *sql.Tx) error {
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, `UPDATE devices SET `+set+`, version = version + 1
			WHERE id = $1 AND account_id = $2 AND revoked_at = $3 RETURNING `+deviceCols, id, account, int64(0), arg))
		if errors.Is(err, ErrNotFound) {
			cur, cerr := scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = $1 AND account_id = $2`, id, account))
			if cerr != nil {
				return cerr
			}
			if cur.Revoked() {
				return ErrRevoked
			}
		}
		if err != nil {
			return err
		}
		u, err := newUpdate(KindDeviceUpdated, d.ID, d.Version, d)
		if err != nil {
			return err
		}
		ups, err = db.emit(ctx, tx, account, []Update{u})
		return err
	})
	if err != nil {
		return Device{}, nil, err
	}
	return d, ups, nil
}

// TouchDevice records that the device was just seen. It writes no update:
// last-seen changes on every connection and would flood the sync log;
// presence is the hub's business.
func (db *DB) TouchDevice(ctx context.Context, account, id string) error {
	st, err := db.prepared(ctx, db.w, `UPDATE devices SET last_seen_at = $1 WHERE id = $2 AND account_id = $3`)
	if err != nil {
		return fmt.Errorf("store: touch device: %w", err)
	}
	return db.write(ctx, "touch device", func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, st).ExecContext(ctx, micros(db.now()), id, account)
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
		return nil
	})
}

// SeenDevice is a device's last-seen time for TouchDevices.
type SeenDevice struct {
	Account, ID string
	At          time.Time
}

// touchBatch bounds the devices one TouchDevices transaction writes, so
// that a large batch does not hold the database's write lock for long.
const touchBatch = 256

// TouchDevices records the last-seen times of several devices, up to
// touchBatch per transaction (one transaction per device was most of what
// last-seen cost in a connect storm: BENCHMARKS.md, "Connect pass"). Like
// TouchDevice it writes no update; devices the store does not know (of
// tokens minted with "junction token") are skipped. It returns how many
// devices it recorded; on an error, the ones before the failed transaction
// stay recorded.
func (db *DB) TouchDevices(ctx context.Context, seen []SeenDevice) (int, error) {
	st, err := db.prepared(ctx, db.w, `UPDATE devices SET last_seen_at = $1 WHERE id = $2 AND account_id = $3`)
	if err != nil {
		return 0, fmt.Errorf("store: touch devices: %w", err)
	}
	total := 0
	for len(seen) > 0 {
		chunk := seen[:min(len(seen), touchBatch)]
		seen = seen[len(chunk):]
		n := 0
		err := db.write(ctx, "touch devices", func(tx *sql.Tx) error {
			n = 0
			ts := tx.StmtContext(ctx, st)
			for _, d := range chunk {
				res, err := ts.ExecContext(ctx, micros(d.At), d.ID, d.Account)
				if err != nil {
					return err
				}
				k, err := res.RowsAffected()
				if err != nil {
					return err
				}
				n += int(k)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// RevokeDevice revokes a device and, in the same transaction, every refresh
// token family of it. Revoking a revoked device changes nothing and returns
// no updates.
func (db *DB) RevokeDevice(ctx context.Context, account, id string) (Device, []Update, error) {
	// Drop a cached "live" answer once the transaction is over, whatever
	// its outcome (see deviceCache).
	defer db.devices.invalidate(account, id)
	var d Device
	var ups []Update
	err := db.write(ctx, "revoke device", func(tx *sql.Tx) error {
		ups = nil
		now := micros(db.now())
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, `UPDATE devices SET revoked_at = $1, version = version + 1
			WHERE id = $2 AND account_id = $3 AND revoked_at = 0 RETURNING `+deviceCols, now, id, account))
		if errors.Is(err, ErrNotFound) {
			// Already revoked (no update) or absent.
			d, err = scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = $1 AND account_id = $2`, id, account))
			return err
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE device_id = $2 AND revoked_at = 0`, now, id); err != nil {
			return fmt.Errorf("revoke refresh tokens: %w", err)
		}
		u, err := newUpdate(KindDeviceRevoked, d.ID, d.Version, d)
		if err != nil {
			return err
		}
		ups, err = db.emit(ctx, tx, account, []Update{u})
		return err
	})
	if err != nil {
		return Device{}, nil, err
	}
	if d.Revoked() {
		db.revoked.addDevice(account, id) // refused from now on (revoked.go)
	}
	return d, ups, nil
}
