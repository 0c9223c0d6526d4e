package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/store/pgtest"
)

// pg is the PostgreSQL server shared by this package's tests, started on
// first use and stopped by TestMain.
var pg pgtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// backends lists the dialects every test runs against.
var backends = []string{"sqlite", "postgres"}

// testDSN returns a fresh database of backend.
func testDSN(t testing.TB, backend string) string {
	t.Helper()
	if backend == "sqlite" {
		return "sqlite:" + filepath.Join(t.TempDir(), "junction.db")
	}
	return pg.DB(t)
}

// openDSN opens and migrates dsn, closed at cleanup.
func openDSN(t testing.TB, dsn string, opts Options) *DB {
	t.Helper()
	db, err := Open(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

// eachBackend runs fn as subtests "sqlite" and "postgres", each with a new,
// migrated database.
func eachBackend(t *testing.T, opts Options, fn func(t *testing.T, db *DB)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			fn(t, openDSN(t, testDSN(t, b), opts))
		})
	}
}

// clock is a fake, settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newAccount creates an account with a random key.
func newAccount(t testing.TB, db *DB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := db.CreateAccount(context.Background(), pub)
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return a.ID
}

// newSession creates a session of account.
func newSession(t testing.TB, db *DB, account string) string {
	t.Helper()
	s, _, err := db.CreateSession(context.Background(), account, []byte("meta"), []byte("state"))
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return s.ID
}

// allUpdates reads the whole retained log of account.
func allUpdates(t testing.TB, db *DB, account string) []Update {
	t.Helper()
	var all []Update
	var since int64
	for {
		ups, reset, err := db.UpdatesSince(context.Background(), account, since, MaxUpdatesLimit)
		if err != nil || reset {
			t.Fatalf("UpdatesSince(%d) = reset %v, err %v", since, reset, err)
		}
		if len(ups) == 0 {
			return all
		}
		all = append(all, ups...)
		since = ups[len(ups)-1].Seq
	}
}

// wantErr fails unless errors.Is(err, want) (want nil: err must be nil).
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: got error %v, want nil", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func TestOpenAndMigrate(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			dsn := testDSN(t, b)
			db, err := Open(t.Context(), dsn, Options{})
			if err != nil {
				t.Fatal(err)
			}
			applied, err := db.Migrate(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) == 0 || applied[0] != 1 {
				t.Fatalf("first Migrate applied %v, want [1 ...]", applied)
			}
			again, err := db.Migrate(t.Context())
			if err != nil || len(again) != 0 {
				t.Fatalf("second Migrate = %v, %v; want nothing applied", again, err)
			}
			if got := db.Dialect(); got != b {
				t.Fatalf("Dialect() = %q, want %q", got, b)
			}
			wantErr(t, "Ping", db.Ping(t.Context()), nil)
			if b == "sqlite" {
				// The settings that make SQLite safe under concurrent writers.
				checks := []struct {
					pool  string
					query string
					want  string
				}{
					{"writer", "PRAGMA journal_mode", "wal"},
					{"writer", "PRAGMA foreign_keys", "1"},
					{"writer", "PRAGMA busy_timeout", "10000"},
					{"reader", "PRAGMA foreign_keys", "1"},
					{"reader", "PRAGMA query_only", "1"},
				}
				for _, c := range checks {
					pool := db.w
					if c.pool == "reader" {
						pool = db.r
					}
					var got string
					if err := pool.QueryRowContext(t.Context(), c.query).Scan(&got); err != nil || got != c.want {
						t.Fatalf("%s %s = %q (%v), want %q", c.pool, c.query, got, err, c.want)
					}
				}
				if n := db.w.Stats().MaxOpenConnections; n != 1 {
					t.Fatalf("writer pool MaxOpenConnections = %d, want 1", n)
				}
			}
			wantErr(t, "Close", db.Close(), nil)
			wantErr(t, "second Close", db.Close(), nil)

			// Concurrent migrators on a fresh database: all succeed, the
			// schema is applied once.
			dsn2 := testDSN(t, b)
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() {
					db, err := Open(t.Context(), dsn2, Options{})
					if err != nil {
						errs[i] = err
						return
					}
					defer db.Close()
					_, errs[i] = db.Migrate(t.Context())
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("concurrent Migrate %d: %v", i, err)
				}
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	for _, dsn := range []string{"", "sqlite::memory:", "sqlite:" + filepath.Join(t.TempDir(), "x.db") + "?_pragma=foo",
		"mysql://u:p@127.0.0.1/db", "junction.db", "server=x uid=y"} {
		if db, err := Open(t.Context(), dsn, Options{}); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want error", dsn)
		}
	}
}

func isErr(err, target error) bool { return errors.Is(err, target) }

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn, want string // want "" for refused
	}{
		{"postgres://u@h/db", "postgres"},
		{"postgresql://u@h/db", "postgres"},
		{"host=127.0.0.1 port=1 user=x", "postgres"},
		{" dbname=junction", "postgres"},
		{"sqlite:junction.db", "sqlite"},
		{"file:junction.db", "sqlite"},
		{"/var/lib/junction/junction.db", "sqlite"},
		{"./junction.db", "sqlite"},
		{"../junction.db", "sqlite"},
		{"", ""},
		{"junction.db", ""},
		{"mysql://u:p@h/db", ""},
		{"redis://h", ""},
		{"server=h uid=x", ""},
	}
	for _, tt := range tests {
		got, err := ParseDSN(tt.dsn)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("ParseDSN(%q): got %q, %v; want %q", tt.dsn, got, err, tt.want)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "want postgres://")) {
			t.Errorf("ParseDSN(%q): error %v, want ErrInvalid listing the accepted forms", tt.dsn, err)
		}
	}
}
