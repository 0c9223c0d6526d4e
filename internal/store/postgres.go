package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	// The database/sql driver (pgx/v5/stdlib) rather than pgxpool: it lets
	// both dialects share one code path (sql.Tx, sql.Rows, Scan), which is
	// what keeps the two backends behaving the same. The cost is a small
	// per-call overhead compared with native pgx, measured in
	// BenchmarkAppendMessages; batches are sent as multi-row statements so
	// round trips, not the driver, dominate.
	"github.com/jackc/pgx/v5/stdlib"
)

// openPostgres opens one pool for reads and writes. Concurrency is handled
// by row locks: writers lock the object row first (SELECT ... FOR UPDATE or
// the UPDATE itself), then the account's counter row (see emit); read
// committed isolation is enough because every allocation of a sequence
// number happens under the lock of the row that holds the counter.
func (db *DB) openPostgres(dsn string) error {
	db.dialect = dialectPostgres
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("store: open postgres: %w", err) // pgconn redacts the password
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
		if db.opts.ConnectTimeout > 0 {
			cfg.ConnectTimeout = db.opts.ConnectTimeout
		}
	}
	if db.opts.StatementTimeout > 0 {
		cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(db.opts.StatementTimeout.Milliseconds(), 10)
	}
	p := stdlib.OpenDB(*cfg)
	n := db.opts.MaxConns
	if n <= 0 {
		n = 16
	}
	p.SetMaxOpenConns(n)
	p.SetMaxIdleConns(n)
	p.SetConnMaxLifetime(poolDuration(db.opts.ConnMaxLifetime, defaultConnMaxLifetime))
	p.SetConnMaxIdleTime(poolDuration(db.opts.ConnMaxIdleTime, defaultConnMaxIdleTime))
	db.w, db.r = p, p
	db.forUpdate = " FOR UPDATE"
	return nil
}

// PostgreSQL pool defaults (Options).
const (
	defaultConnectTimeout  = 5 * time.Second
	defaultConnMaxLifetime = 30 * time.Minute
	defaultConnMaxIdleTime = 5 * time.Minute
)

// poolDuration is an Options duration for database/sql: zero is def,
// negative is none (0 to database/sql).
func poolDuration(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// PoolStats returns the PostgreSQL pool's settings and use as database/sql
// reports them (for tests and /readyz); the SQLite writer's for SQLite.
func (db *DB) PoolStats() sql.DBStats { return db.w.Stats() }

// pgCode returns the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
