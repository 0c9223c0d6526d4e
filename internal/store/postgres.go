package store

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	// The database/sql driver (pgx/v5/stdlib) rather than pgxpool: it lets
	// both dialects share one code path (sql.Tx, sql.Rows, Scan), which is
	// what keeps the two backends behaving the same. The cost is a small
	// per-call overhead compared with native pgx, measured in
	// BenchmarkAppendMessages; batches are sent as multi-row statements so
	// round trips, not the driver, dominate.
	_ "github.com/jackc/pgx/v5/stdlib"
)

// openPostgres opens one pool for reads and writes. Concurrency is handled
// by row locks: writers lock the object row first (SELECT ... FOR UPDATE or
// the UPDATE itself), then the account's counter row (see emit); read
// committed isolation is enough because every allocation of a sequence
// number happens under the lock of the row that holds the counter.
func (db *DB) openPostgres(dsn string) error {
	db.dialect = dialectPostgres
	p, err := sql.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("store: open postgres: %w", err)
	}
	n := db.opts.MaxConns
	if n <= 0 {
		n = 16
	}
	p.SetMaxOpenConns(n)
	p.SetMaxIdleConns(n)
	db.w, db.r = p, p
	db.forUpdate = " FOR UPDATE"
	return nil
}

// pgCode returns the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
