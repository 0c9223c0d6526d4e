package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// migrationFS holds the schema, one set of numbered files for both dialects
// ("0001_init.sql", ...). The only dialect difference in the DDL is the
// binary type, written {{bytes}}: BLOB on SQLite, BYTEA on PostgreSQL.
// Integers are BIGINT (SQLite accepts it with INTEGER affinity; no table
// relies on SQLite's rowid alias). Files are append-only: never edit an
// applied migration, add the next number.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered file.
type migration struct {
	version int64
	name    string
	sql     string
}

func loadMigrations(d dialect) ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	bytesType := "BLOB"
	if d == dialectPostgres {
		bytesType = "BYTEA"
	}
	var ms []migration
	for _, path := range names {
		name := strings.TrimPrefix(path, "migrations/")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: name must start with a positive number and '_'", name)
		}
		body, err := migrationFS.ReadFile(path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: strings.ReplaceAll(string(body), "{{bytes}}", bytesType)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %q and %q share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// Migrate applies the embedded migrations not yet recorded in
// schema_migrations, all in one transaction. It is idempotent and safe to
// run from several processes at once (PostgreSQL: an advisory lock; SQLite:
// the write lock taken by BEGIN IMMEDIATE). It returns the versions it
// applied.
func (db *DB) Migrate(ctx context.Context) (applied []int64, err error) {
	ms, err := loadMigrations(db.dialect)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: load: %w", err)
	}
	err = db.write(ctx, "migrate", func(tx *sql.Tx) error {
		applied = nil
		if db.dialect == dialectPostgres {
			// Serializes concurrent migrators, including the CREATE TABLE
			// IF NOT EXISTS below, which races on PostgreSQL's catalog.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(4242001)`); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		done := map[int64]bool{}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("read schema_migrations: %w", err)
			}
			done[v] = true
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, m := range ms {
			if done[m.version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, micros(db.now())); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	return applied, err
}
