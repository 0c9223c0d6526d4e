package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// Prepared statements and the device status cache: the two things the
// WebSocket connect path asks of the store on every connect and disconnect.
// Hot queries are prepared once per pool (database/sql then keeps one
// prepared statement per pooled connection and re-prepares on a new one).
// That spares PostgreSQL a parse per execution; the pure Go SQLite driver
// (modernc.org/sqlite v1.40.1) compiles the SQL again on every execution,
// prepared or not (its stmt.exec and stmt.query call sqlite3_prepare_v2),
// so on SQLite it spares only database/sql's bookkeeping: what counts there
// is fewer executions and short statement texts (BENCHMARKS.md, "Connect
// pass").

// stmts caches prepared statements by pool and query text.
type stmts struct {
	mu sync.Mutex
	m  map[stmtKey]*sql.Stmt // guarded by mu
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// prepared returns the statement for query prepared on pool, preparing it
// on first use. A failure is not cached: the next call tries again.
func (db *DB) prepared(ctx context.Context, pool *sql.DB, query string) (*sql.Stmt, error) {
	k := stmtKey{pool, query}
	db.stmts.mu.Lock()
	st := db.stmts.m[k]
	db.stmts.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	if db.stmts.m == nil {
		db.stmts.m = make(map[stmtKey]*sql.Stmt)
	}
	if prev := db.stmts.m[k]; prev != nil {
		_ = st.Close() // lost a race: keep the first
		return prev, nil
	}
	db.stmts.m[k] = st
	return st, nil
}

// closeStmts closes every cached statement; called by Close before the pools.
func (db *DB) closeStmts() {
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	for k, st := range db.stmts.m {
		_ = st.Close()
		delete(db.stmts.m, k)
	}
}

// DeviceStatus is what DeviceStatus answers about a device.
type DeviceStatus int

const (
	// DeviceUnknown: the store has no such device for the account.
	DeviceUnknown DeviceStatus = iota
	// DeviceLive: the device exists and is not revoked.
	DeviceLive
	// DeviceRevoked: the device has been revoked (revocation is final).
	DeviceRevoked
)

// maxDeviceCache bounds each generation of the device status cache; when
// full, the generation is rotated early (a connect storm of more distinct
// devices than this only loses hits).
const maxDeviceCache = 1 << 15

// deviceCache remembers recent DeviceStatus answers (DB.devices, by account
// and device id) or LoginStatus answers (DB.logins, by login session id).
//
// Correctness: revocation is final (revoked_at is never cleared and devices
// are never deleted), so a DeviceRevoked answer may be served at any age. A
// DeviceLive or DeviceUnknown answer is dropped by RevokeDevice and
// CreateDevice of THIS process (a login's by RevokeFamily and RotateRefresh's
// reuse detection) as soon as their transaction returns, and a
// lookup that raced with such a change is not stored (gen). Another process
// sharing the database (a second node on PostgreSQL) is not seen: its
// revocation reaches this process after at most the TTL
// (Options.DeviceCacheTTL).
//
// Memory: answers live in two generations, cur and prev; cur becomes prev
// every TTL, so an entry is forgotten after at most two TTLs and the cache
// holds only the devices that connected recently. While it holds anything,
// one timer sweeps it every TTL, so an idle connection costs it nothing once
// its connect is two TTLs old, even when nothing else is looked up.
type deviceCache struct {
	mu       sync.Mutex
	gen      uint64                 // guarded by mu: bumped by every invalidation
	cur      map[string]deviceEntry // guarded by mu: by account + "\x00" + device id
	prev     map[string]deviceEntry // guarded by mu: the generation before cur
	rotated  time.Time              // guarded by mu: when cur was started
	lastPut  time.Time              // guarded by mu: the newest entry's time
	sweeping bool                   // guarded by mu: a sweep is scheduled
}

type deviceEntry struct {
	status DeviceStatus
	at     time.Time // when the answer was read from the database
}

func deviceKey(account, id string) string { return account + "\x00" + id }

// invalidate drops the cached status of a device and makes lookups in
// flight not store theirs.
func (c *deviceCache) invalidate(account, id string) { c.invalidateKey(deviceKey(account, id)) }

// invalidateKey drops the cached status under k and makes lookups in
// flight not store theirs.
func (c *deviceCache) invalidateKey(k string) {
	c.mu.Lock()
	c.gen++
	delete(c.cur, k)
	delete(c.prev, k)
	c.mu.Unlock()
}

// getLocked returns the entry for k from either generation.
func (c *deviceCache) getLocked(k string) (deviceEntry, bool) {
	if e, ok := c.cur[k]; ok {
		return e, true
	}
	e, ok := c.prev[k]
	return e, ok
}

// putLocked stores e under k, rotating the generations when cur is older
// than ttl or full.
func (c *deviceCache) putLocked(k string, e deviceEntry, ttl time.Duration) {
	if c.cur == nil || len(c.cur) >= maxDeviceCache || e.at.Sub(c.rotated) >= ttl {
		c.prev = c.cur
		if e.at.Sub(c.rotated) >= 2*ttl {
			c.prev = nil // every answer in it is older than ttl
		}
		c.cur, c.rotated = make(map[string]deviceEntry), e.at
	}
	c.cur[k] = e
	c.lastPut = e.at
	if !c.sweeping {
		c.sweeping = true
		time.AfterFunc(ttl, func() { c.sweep(ttl) })
	}
}

// sweep forgets the generations whose answers are all older than ttl, and
// runs again after ttl while anything is left.
func (c *deviceCache) sweep(ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.rotated) >= ttl {
		c.prev = nil // its answers predate rotated
	}
	if now.Sub(c.lastPut) >= ttl {
		c.cur, c.prev = nil, nil
	}
	if c.cur == nil && c.prev == nil {
		c.sweeping = false
		return
	}
	time.AfterFunc(ttl, func() { c.sweep(ttl) })
}

// DeviceStatus reports whether account's device id is unknown, live or
// revoked, from a short-lived cache (see deviceCache) or the database. It
// is the check made on every authenticated connect and request.
func (db *DB) DeviceStatus(ctx context.Context, account, id string) (DeviceStatus, error) {
	st, err := db.cachedStatus(ctx, &db.devices, deviceKey(account, id),
		`SELECT COUNT(*), COALESCE(MAX(revoked_at), 0) FROM devices WHERE id = $1 AND account_id = $2`, id, account)
	if err != nil {
		return DeviceUnknown, fmt.Errorf("store: device status: %w", err)
	}
	return st, nil
}

// LoginStatus reports whether the login session sid (the refresh token
// family of one login, the "sid" claim of its access tokens) is unknown,
// live or revoked, from a short-lived cache or the database: the check made
// with DeviceStatus on every authenticated connect and request. A family is
// revoked as a whole (logout, reuse of a refresh token, its device revoked)
// and never revived, so one revoked token means the login is revoked; the
// answer uses the same statuses as a device's. A family whose tokens have
// all expired and been pruned is unknown: its access tokens, shorter-lived
// than its refresh tokens, have expired too.
func (db *DB) LoginStatus(ctx context.Context, sid string) (DeviceStatus, error) {
	st, err := db.cachedStatus(ctx, &db.logins, sid,
		`SELECT COUNT(*), COALESCE(MAX(revoked_at), 0) FROM refresh_tokens WHERE family_id = $1`, sid)
	if err != nil {
		return DeviceUnknown, fmt.Errorf("store: login status: %w", err)
	}
	return st, nil
}

// cachedStatus answers key from c, or runs query (which returns a row
// count and the largest revoked_at) and caches its answer (see deviceCache).
func (db *DB) cachedStatus(ctx context.Context, c *deviceCache, key, query string, args ...any) (DeviceStatus, error) {
	ttl := db.opts.DeviceCacheTTL
	var gen uint64
	if ttl > 0 {
		c.mu.Lock()
		e, ok := c.getLocked(key)
		gen = c.gen
		c.mu.Unlock()
		if ok && (e.status == DeviceRevoked || time.Since(e.at) < ttl) {
			return e.status, nil
		}
	}
	at := time.Now()
	st, err := db.prepared(ctx, db.r, query)
	if err != nil {
		return DeviceUnknown, err
	}
	var n, revoked int64
	if err := st.QueryRowContext(ctx, args...).Scan(&n, &revoked); err != nil {
		return DeviceUnknown, err
	}
	status := DeviceLive
	switch {
	case n == 0:
		status = DeviceUnknown
	case revoked != 0:
		status = DeviceRevoked
	}
	if ttl > 0 {
		c.mu.Lock()
		if c.gen == gen {
			c.putLocked(key, deviceEntry{status: status, at: at}, ttl)
		}
		c.mu.Unlock()
	}
	return status, nil
}
