package store

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite configuration, chosen so concurrent writers never see SQLITE_BUSY:
//
//   - WAL journal: readers never block the writer and the writer never
//     blocks readers; synchronous=NORMAL is durable across process crashes
//     (a power loss may drop the last transactions, never corrupt the file).
//   - Two pools on the same file. The write pool has exactly ONE connection,
//     so concurrent write transactions queue in database/sql (in Go, FIFO-ish)
//     instead of spinning in SQLite's busy handler. Its transactions begin
//     with BEGIN IMMEDIATE (_txlock=immediate), so a transaction that reads
//     then writes never has to upgrade its lock, which is what deadlocks
//     deferred transactions. The read pool (Options.MaxConns, default 4) is
//     query_only and uses deferred read transactions, each one snapshot.
//   - busy_timeout=10s covers the remaining case: another process (a second
//     junction, the sqlite3 shell) holding the write lock.
//   - foreign_keys=ON per connection (SQLite's default is off).
//
// An in-memory database is not supported: the two pools would see two
// different databases. Tests use a file in t.TempDir().
func (db *DB) openSQLite(dsn string) error {
	db.dialect = dialectSQLite
	path := strings.TrimPrefix(dsn, "sqlite:")
	path = strings.TrimPrefix(path, "file:")
	if path == "" || strings.Contains(path, ":memory:") || strings.Contains(path, "mode=memory") {
		return fmt.Errorf("store: open sqlite %q: need a file path: %w", dsn, ErrInvalid)
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return fmt.Errorf("store: open sqlite %q: query parameters are set by the store: %w", dsn, ErrInvalid)
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"

	w, err := sql.Open("sqlite", base+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("store: open sqlite writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	r, err := sql.Open("sqlite", base+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return fmt.Errorf("store: open sqlite readers: %w", err)
	}
	n := db.opts.MaxConns
	if n <= 0 {
		n = 4
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	db.w, db.r = w, r
	db.forUpdate = ""
	return nil
}

// isUnique reports a unique or primary key violation in either dialect.
func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return pgCode(err) == "23505"
}

// isForeignKey reports a foreign key violation in either dialect.
func isForeignKey(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return pgCode(err) == "23503"
}

// retryable reports an error after which the whole transaction may simply
// be run again: a PostgreSQL deadlock or serialization failure, or SQLite
// busy (only possible when another process holds the write lock past
// busy_timeout).
func (db *DB) retryable(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()&0xff == sqlite3.SQLITE_BUSY
	}
	switch pgCode(err) {
	case "40P01", "40001":
		return true
	}
	return false
}
