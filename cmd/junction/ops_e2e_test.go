package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runCmd runs the binary's entry point (what main calls) with args and an
// empty environment, and returns its exit code, stdout and stderr.
func runCmd(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestDatabaseAddresses: PostgreSQL URLs and key=value strings go to
// PostgreSQL, SQLite needs sqlite: or a path, and anything else is refused
// naming the key and the accepted forms, before anything is created.
func TestDatabaseAddresses(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		dsn      string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{name: "mysql url", dsn: "mysql://u:secret@127.0.0.1/db", wantCode: 1, wantErr: "junction: database: mysql:// is not a database Junction supports"},
		{name: "bare word", dsn: "junction.db", wantCode: 1, wantErr: `database: "junction.db" is neither a PostgreSQL address nor a SQLite path; want postgres://`},
		{name: "unknown keyword", dsn: "server=127.0.0.1 uid=x", wantCode: 1, wantErr: `database: "server" is not a PostgreSQL connection keyword`},
		// A key=value string is PostgreSQL: nothing listens on port 1, so
		// the connection fails (no SQLite file named after the string).
		{name: "postgres key=value", dsn: "host=127.0.0.1 port=1 user=x connect_timeout=5", wantCode: 1, wantErr: "open database: store: open postgres"},
		{name: "postgres url", dsn: "postgres://x@127.0.0.1:1/db?connect_timeout=5", wantCode: 1, wantErr: "open database: store: open postgres"},
		{name: "sqlite url", dsn: "sqlite:" + filepath.Join(dir, "a.db"), wantOut: "sqlite database: applied migrations"},
		{name: "absolute path", dsn: filepath.Join(dir, "b.db"), wantOut: "sqlite database: applied migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			code, stdout, stderr := runCmd(t, ctx, "migrate", "--data", filepath.Join(dir, "data"), "--database", tt.dsn)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantOut) || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("got exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q", code, stdout, stderr, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			if strings.Contains(stderr, "secret") {
				t.Errorf("stderr shows the password: %q", stderr)
			}
			if _, err := os.Stat(tt.dsn); tt.wantCode != 0 && err == nil {
				t.Errorf("a file named %q was created", tt.dsn)
			}
		})
	}
	// serve refuses the same way, before creating the data directory.
	data := filepath.Join(dir, "serve-data")
	code, _, stderr := runCmd(t, t.Context(), "serve", "--addr", "127.0.0.1:0", "--data", data, "--database", "mysql://u@h/db")
	if code != 1 || !strings.Contains(stderr, "database: mysql://") {
		t.Errorf("serve: got exit %d, stderr %q; want 1 and the database error", code, stderr)
	}
	if _, err := os.Stat(data); err == nil {
		t.Errorf("serve created %s before refusing the configuration", data)
	}
}

// TestDataNoAccount: a data request with a token whose user has no account
// (one minted with "junction token") answers 404 saying so and how to get
// one, on REST and on the WebSocket; an account's missing object still
// answers a plain not found.
func TestDataNoAccount(t *testing.T) {
	m := startServer(t, nil)
	tok := mintToken(t, m, "alice", "laptop", "browser")
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/v1/sessions"}, {"GET", "/api/v1/sessions/x"}, {"GET", "/api/v1/updates?since=0"}, {"POST", "/api/v1/machines"},
	} {
		var body any
		if r.method == "POST" {
			body = map[string]any{}
		}
		code, raw := apiCall(t, m, tok, r.method, r.path, body)
		e := decodeAPIError(t, raw)
		if code != 404 || e.Error.Code != "not_found" || !strings.Contains(e.Error.Message, `no account for user "alice"`) ||
			!strings.Contains(e.Error.Message, "POST /api/v1/auth/login") || e.Error.Details["reason"] != "no_account" {
			t.Errorf("%s %s: got %d %s, want 404 not_found saying there is no account and how to log in", r.method, r.path, code, raw)
		}
	}
	c := dialToken(t, m, tok)
	err := call(t, c, "session.create", map[string]any{}, nil)
	if pe := asProtocolError(err); pe == nil || pe.Code != "not_found" || !strings.Contains(pe.Message, "no account") {
		t.Errorf("session.create over the WebSocket: got %v, want not_found saying there is no account", err)
	}

	owner := login(t, m, newKey(t), "browser")
	code, raw := apiCall(t, m, owner.AccessToken, "GET", "/api/v1/sessions/x", nil)
	if e := decodeAPIError(t, raw); code != 404 || e.Error.Message != "not found" {
		t.Errorf("an account's missing session: got %d %s, want 404 not found", code, raw)
	}
}
