package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"sync"
	"time"
)

// The revocation check made on every authenticated connect and request
// (DeviceRevoked, LoginRevoked) is answered from memory: the set of revoked
// devices and logins, read whole on first use and then kept true by
//
//   - this process's revocations (RevokeDevice, RevokeFamily, a refresh
//     token's reuse), added as soon as their transaction commits, and
//   - another process's (a second node on PostgreSQL), read from the
//     database at most revocationPoll after the last look: the revocations
//     since then, through partial indexes of revoked rows (migration 0019).
//
// So a connect costs no query, whether its device connected a moment ago
// or never before (the short-lived status cache it replaces missed for
// every device that had not connected within the TTL: one or two SQLite
// queries per connect, BENCHMARKS.md "Connect pass"), and another node's
// revocation is refused after at most Options.DeviceCacheTTL, as before.
//
// Revocation is final (revoked_at is never cleared), so the set only grows
// by the revocations made, with two bounds: a device's entry is kept for
// good (a device's tokens may be minted by an operator for any lifetime),
// about 100 bytes each; a login's entry is dropped once every refresh token
// of it has expired, when its access tokens, shorter-lived, have expired
// too (as LoginStatus, which then answers unknown).
type revocations struct {
	read sync.Mutex // held while the database is read: one reader at a time

	mu       sync.Mutex
	loaded   bool                       // guarded by mu: the set was read whole once
	devices  map[accountDevice]struct{} // guarded by mu: revoked devices
	families map[string]int64           // guarded by mu: revoked login (family id) → when its last refresh token expires (micros)
	mark     int64                      // guarded by mu: the newest revoked_at read
	polled   time.Time                  // guarded by mu: when the database was last read (DB.now)
	polling  bool                       // guarded by mu: a reader is reading the revocations since mark
}

// accountDevice is a device's key in the set.
type accountDevice struct{ account, id string }

// revocationOverlap is how far before the newest revocation read each poll
// reads again: a revocation whose transaction committed late, or stamped by
// a node whose clock lags by up to this, is still found.
const revocationOverlap = 5 * time.Minute

// addDevice records a device this process revoked.
func (r *revocations) addDevice(account, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.devices == nil {
		r.devices = make(map[accountDevice]struct{})
	}
	r.devices[accountDevice{account, id}] = struct{}{}
}

// addFamily records a login this process revoked; its expiry is read by
// the next poll (the overlap reads it again).
func (r *revocations) addFamily(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.families == nil {
		r.families = make(map[string]int64)
	}
	if _, ok := r.families[id]; !ok {
		r.families[id] = math.MaxInt64
	}
}

// fresh makes sure the set is at most ttl old: it reads the revocations
// since the last look when that is older, or the whole set the first time.
// While another goroutine reads, callers use the set as it is (no older
// than ttl plus that read), but before the first read completes every
// caller waits for it.
func (r *revocations) fresh(ctx context.Context, db *DB, ttl time.Duration) error {
	r.mu.Lock()
	if r.loaded && (r.polling || db.now().Sub(r.polled) < ttl) {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	r.read.Lock()
	defer r.read.Unlock()
	r.mu.Lock()
	if r.loaded && db.now().Sub(r.polled) < ttl {
		r.mu.Unlock()
		return nil
	}
	loaded, since := r.loaded, r.mark-revocationOverlap.Microseconds()
	r.polling = true
	r.mu.Unlock()

	at := db.now()
	if !loaded {
		since = 0
	}
	devices, families, err := db.revokedSince(ctx, since)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.polling = false
	if err != nil {
		return fmt.Errorf("store: read revocations: %w", err)
	}
	if r.devices == nil {
		r.devices = make(map[accountDevice]struct{}, len(devices))
	}
	if r.families == nil {
		r.families = make(map[string]int64, len(families))
	}
	for _, d := range devices {
		r.devices[d.device] = struct{}{}
		r.mark = max(r.mark, d.at)
	}
	now := micros(db.now())
	for _, f := range families {
		r.mark = max(r.mark, f.at)
		if f.expires > now {
			r.families[f.key] = f.expires
		} else {
			delete(r.families, f.key) // added by addFamily, expired since
		}
	}
	for id, exp := range r.families {
		if exp <= now {
			delete(r.families, id)
		}
	}
	r.loaded, r.polled = true, at
	return nil
}

// revokedRow is a revoked device or login (key: its family id), when it
// was revoked and, for a login, when its last refresh token expires.
type revokedRow struct {
	device      accountDevice
	key         string
	at, expires int64
}

// revokedSince reads the devices and logins revoked after since (micros).
func (db *DB) revokedSince(ctx context.Context, since int64) (devices, families []revokedRow, err error) {
	err = db.read(ctx, "revocations", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT account_id, id, revoked_at FROM devices WHERE revoked_at <> 0 AND revoked_at > $1`, since)
		if err != nil {
			return err
		}
		devices, err = collect(rows, func(s scanner) (revokedRow, error) {
			var r revokedRow
			err := s.Scan(&r.device.account, &r.device.id, &r.at)
			return r, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT family_id, MAX(revoked_at), MAX(expires_at) FROM refresh_tokens
			WHERE revoked_at <> 0 AND revoked_at > $1 GROUP BY family_id`, since)
		if err != nil {
			return err
		}
		families, err = collect(rows, func(s scanner) (revokedRow, error) {
			var r revokedRow
			err := s.Scan(&r.key, &r.at, &r.expires)
			return r, err
		})
		return err
	})
	return devices, families, err
}

// deviceRevoked answers DeviceRevoked from the set.
func (r *revocations) deviceRevoked(account, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.devices[accountDevice{account, id}]
	return ok
}

// loginRevoked answers LoginRevoked from the set.
func (r *revocations) loginRevoked(sid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.families[sid]
	return ok
}
