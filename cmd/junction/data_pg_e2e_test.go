package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/store/pgtest"
	"github.com/junctionhq/junction/protocol"
)

// postgresDSN starts a throwaway PostgreSQL server for the test (the
// store's harness, stopped at cleanup) and returns a fresh database on it.
// It skips when PostgreSQL is not installed, or fails with
// JUNCTION_REQUIRE_POSTGRES=1.
func postgresDSN(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgtest.Start(ctx)
	if errors.Is(err, pgtest.ErrNotInstalled) {
		if os.Getenv(pgtest.EnvRequire) == "1" {
			t.Fatalf("%v (and %s=1)", err, pgtest.EnvRequire)
		}
		t.Skip("SKIPPING POSTGRESQL TESTS: ", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop postgres: %v", err)
		}
	})
	dsn, err := srv.CreateDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// TestAccountAPIBothBackends runs the core of the account API against
// SQLite and PostgreSQL, including a restart that keeps idempotency.
func TestAccountAPIBothBackends(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dsn := ""
			if backend == "postgres" {
				dsn = postgresDSN(t)
			}
			dir := t.TempDir()
			cfg := func(c *Config) { c.Data, c.Database = dir, dsn }
			m := startServer(t, cfg)
			if got := m.Store.Dialect(); got != backend {
				t.Fatalf("dialect: got %s, want %s", got, backend)
			}
			tok := login(t, m, newKey(t), "phone")
			var s protocol.Session
			apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("m"))}, 201, &s, "Idempotency-Key", "create-1")
			var msgs protocol.MessageList
			apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/sessions/"+s.ID+"/messages", map[string]any{"messages": []map[string]string{
				{"localId": "a", "body": b64([]byte("1"))}, {"localId": "a", "body": b64([]byte("dup"))}, {"body": b64([]byte("2"))},
			}}, 201, &msgs)
			if len(msgs.Items) != 3 || msgs.Items[1].ID != msgs.Items[0].ID || msgs.Items[2].Seq != 2 {
				t.Fatalf("append with a repeated local id: got %+v", msgs.Items)
			}
			if status, _ := apiCall(t, m, tok.AccessToken, "PUT", "/api/v1/sessions/"+s.ID+"/metadata", map[string]any{"value": "", "expectedVersion": 3}); status != 409 {
				t.Fatalf("stale update: status %d, want 409", status)
			}
			var ups protocol.Updates
			apiJSON(t, m, tok.AccessToken, "GET", "/api/v1/updates?since=1", nil, 200, &ups)
			if len(ups.Updates) != 3 || ups.Updates[0].Kind != "session.created" {
				t.Fatalf("updates since 1: got %+v", ups)
			}
			var ready map[string]any
			apiJSON(t, m, "", "GET", "/readyz", nil, 200, &ready)
			if checks, _ := ready["checks"].(map[string]any); checks["store"] != "ok" {
				t.Fatalf("readyz: got %v, want store ok", ready)
			}

			if err := m.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			m2 := startServer(t, cfg)
			var again protocol.Session
			apiJSON(t, m2, tok.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("m"))}, 201, &again, "Idempotency-Key", "create-1")
			if again.ID != s.ID {
				t.Fatalf("idempotent repeat after restart: got %s, want %s", again.ID, s.ID)
			}
			var refreshed protocol.Tokens
			apiJSON(t, m2, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": tok.RefreshToken}, 200, &refreshed)
		})
	}
}

func TestMigrateCommand(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"migrate", "--data", dir}
			if backend == "postgres" {
				args = append(args, "--database", postgresDSN(t))
			}
			var out, errOut bytes.Buffer
			if code := run(context.Background(), args, nil, &out, &errOut); code != 0 {
				t.Fatalf("first migrate: exit %d, %s", code, errOut.String())
			}
			// Every migration, from the first (0001_init, 0002_apps, then 0015_schedules, ...).
			if !regexp.MustCompile(`applied migrations \[1 2( [0-9]+)*\]`).MatchString(out.String()) {
				t.Fatalf("first migrate: got %q", out.String())
			}
			out.Reset()
			if code := run(context.Background(), args, nil, &out, &errOut); code != 0 {
				t.Fatalf("second migrate: exit %d, %s", code, errOut.String())
			}
			if !strings.Contains(out.String(), backend+" database is up to date") {
				t.Fatalf("second migrate: got %q", out.String())
			}
			if backend == "sqlite" {
				if _, err := os.Stat(filepath.Join(dir, "junction.db")); err != nil {
					t.Fatalf("database file: %v", err)
				}
			}
		})
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"migrate", "--database", "postgres://127.0.0.1:1/none?connect_timeout=1"}, nil, &bytes.Buffer{}, &errOut); code != 1 {
		t.Fatalf("migrate of an unreachable database: exit %d, want 1", code)
	}
}
