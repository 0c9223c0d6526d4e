package store

import (
	"database/sql"
	"sync"
	"testing"
	"time"
)

// Nodes of a cluster starting at once against one fresh PostgreSQL migrate
// it once: the advisory lock serialises them, one applies every migration,
// the others find them applied, and each version is recorded once.
func TestMigrateConcurrentNodesPostgres(t *testing.T) {
	dsn := testDSN(t, "postgres")
	ms, err := loadMigrations(dialectPostgres)
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 6
	var (
		wg      sync.WaitGroup
		applied = make([][]int64, nodes)
		errs    = make([]error, nodes)
		start   = make(chan struct{})
	)
	for i := range nodes {
		wg.Go(func() {
			db, err := Open(t.Context(), dsn, Options{MaxConns: 2})
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			<-start
			applied[i], errs[i] = db.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	count := map[int64]int{}
	migrators := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: Migrate: %v", i, err)
		}
		if len(applied[i]) > 0 {
			migrators++
		}
		for _, v := range applied[i] {
			count[v]++
		}
	}
	if migrators != 1 {
		t.Fatalf("got %d nodes applying migrations (%v), want 1", migrators, applied)
	}
	for _, m := range ms {
		if count[m.version] != 1 {
			t.Fatalf("migration %d applied %d times, want once", m.version, count[m.version])
		}
	}
	db := openDSN(t, dsn, Options{})
	var rows int
	if err := db.w.QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(ms) {
		t.Fatalf("got %d rows in schema_migrations (%v), want %d", rows, err, len(ms))
	}
}

// The pool settings reach database/sql and the server.
func TestPostgresPoolOptions(t *testing.T) {
	dsn := testDSN(t, "postgres")
	db := openDSN(t, dsn, Options{MaxConns: 3, StatementTimeout: 1500 * time.Millisecond, ConnMaxLifetime: -1})
	if got := db.PoolStats().MaxOpenConnections; got != 3 {
		t.Fatalf("got MaxOpenConnections %d, want 3", got)
	}
	var timeout string
	if err := db.w.QueryRowContext(t.Context(), `SHOW statement_timeout`).Scan(&timeout); err != nil || timeout != "1500ms" {
		t.Fatalf("got statement_timeout %q (%v), want 1500ms", timeout, err)
	}
	// A statement over the timeout is cancelled by the server.
	var x sql.NullString
	if err := db.w.QueryRowContext(t.Context(), `SELECT pg_sleep(3)::text`).Scan(&x); err == nil || pgCode(err) != "57014" {
		t.Fatalf("got %v for a statement over statement_timeout, want query_canceled (57014)", err)
	}
}
