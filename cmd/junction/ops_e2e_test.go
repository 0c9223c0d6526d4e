package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// serveBinary runs "junction serve" with args through the binary's entry
// point until the returned stop is called; it returns once the server
// printed its URL. stop returns the exit code.
func serveBinary(t *testing.T, stderr io.Writer, args ...string) (url string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"serve"}, args...), nil, pw, stderr)
		pw.Close()
		done <- code
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Junction "); ok {
			_, after, _ := strings.Cut(rest, " listening on ")
			url, _, _ = strings.Cut(after, " ")
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		cancel()
		t.Fatalf("serve exited with %d before listening", <-done)
	}
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() { cancel(); code = <-done })
		return code
	}
	t.Cleanup(func() { stop() })
	return url, stop
}

// TestStartRefusals: a busy port fails before the data directory, keys or
// database are created; a second server on a data directory in use is
// refused naming the holder, and starts once the first has stopped.
func TestStartRefusals(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := filepath.Join(t.TempDir(), "data")
	code, _, stderr := runCmd(t, t.Context(), "serve", "--addr", busy.Addr().String(), "--data", data)
	if code != 1 || !strings.Contains(stderr, "the address is in use") {
		t.Errorf("busy port: got exit %d, stderr %q; want 1 and the address in use", code, stderr)
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("busy port: %s exists (%v), want nothing created", data, err)
	}

	var log1 lockedBuffer
	_, stop := serveBinary(t, &log1, "--addr", "127.0.0.1:0", "--data", data)
	// Bounded: a second server that starts serves until its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	code, _, stderr = runCmd(t, ctx, "serve", "--addr", "127.0.0.1:0", "--data", data)
	want := fmt.Sprintf("data directory in use: process %d holds %s", os.Getpid(), filepath.Join(data, "junction.lock"))
	if code != 1 || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("second server: got exit %d, stderr %q; want 1 and one line with %q", code, stderr, want)
	}
	if got := stop(); got != 0 {
		t.Fatalf("first server: exit %d, log %s", got, log1.String())
	}
	_, stop = serveBinary(t, io.Discard, "--addr", "127.0.0.1:0", "--data", data)
	if got := stop(); got != 0 {
		t.Errorf("restart after the first stopped: exit %d", got)
	}
}

// logLines decodes the server's JSON log lines.
func logLines(t *testing.T, raw string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(raw) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// TestServeLogs: the start line says which store, database and broker the
// server runs on, and the last line is "stopped".
func TestServeLogs(t *testing.T) {
	var logs lockedBuffer
	data := t.TempDir()
	_, stop := serveBinary(t, &logs, "--addr", "127.0.0.1:0", "--data", data, "--log-format", "json")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := logLines(t, logs.String())
	var start map[string]any
	for _, l := range lines {
		if l["msg"] == "listening" {
			start = l
		}
	}
	if start == nil || start["store"] != "sqlite" || start["broker"] != "memory" || start["database"] != filepath.Join(data, "junction.db") {
		t.Errorf("start line: got %v, want store sqlite, broker memory, database %s", start, filepath.Join(data, "junction.db"))
	}
	if last := lines[len(lines)-1]; last["msg"] != "stopped" || last["level"] != "INFO" {
		t.Errorf("last log line: got %v, want INFO stopped", last)
	}
}

func TestDatabaseLocation(t *testing.T) {
	for _, tt := range []struct{ dsn, want string }{
		{"", "d/junction.db"},
		{"sqlite:/x/j.db", "/x/j.db"},
		{"postgres://u:secret@db.example:5432/junction?sslmode=disable", "db.example:5432/junction"},
		{"host=db.example port=5432 user=u password=secret dbname=junction", "db.example:5432/junction"},
	} {
		if got := databaseLocation(&Config{Data: "d", Database: tt.dsn}); got != tt.want {
			t.Errorf("databaseLocation(%q): got %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

// TestConfigErrors: through the binary's entry point, a bad flag or config
// file gives one line in plain words naming the key and the expected form,
// without Go's type names or the 130 lines of usage.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dur := file("dur.yaml", "addr: 127.0.0.1:0\nhub:\n  heartbeat_interval: 20ss\n")
	nested := file("nested.yaml", "hub:\n  heartbeat_intervall: 5s\n")
	boolean := file("bool.yaml", "web:\n  lockdown: maybe\n")
	number := file("int.yaml", "store:\n  max_conns: lots\n")
	tests := []struct {
		name string
		args []string
		want string // the whole stderr
	}{
		{"unknown flag", []string{"serve", "--adr", "x"}, "junction: flag provided but not defined: -adr; run 'junction serve --help' for the list of flags\n"},
		{"bad flag value", []string{"serve", "--hub-heartbeat-interval", "soon"}, "junction: invalid value \"soon\" for flag -hub-heartbeat-interval: want a duration like 30s or 5m; run 'junction serve --help' for the list of flags\n"},
		{"bench unknown flag", []string{"bench", "--scenarioo", "connect"}, "junction: flag provided but not defined: -scenarioo; run 'junction bench --help' for the list of flags\n"},
		{"token unknown flag", []string{"token", "--usr", "a"}, "junction: flag provided but not defined: -usr; run 'junction token --help' for the list of flags\n"},
		{"yaml duration typo", []string{"serve", "--config", dur}, "junction: config file " + dur + ": line 3: hub.heartbeat_interval: \"20ss\" is not a duration like 30s, 5m or 1h30m\n"},
		{"yaml nested unknown key", []string{"serve", "--config", nested}, "junction: config file " + nested + ": line 2: unknown key hub.heartbeat_intervall (run 'junction serve --help' for the keys)\n"},
		{"yaml bool", []string{"serve", "--config", boolean}, "junction: config file " + boolean + ": line 2: web.lockdown: \"maybe\" is not true or false\n"},
		{"yaml int", []string{"serve", "--config", number}, "junction: config file " + number + ": line 2: store.max_conns: \"lots\" is not a whole number\n"},
		{"access outlives refresh", []string{"serve", "--auth-access-ttl", "48h", "--auth-refresh-ttl", "24h"}, "junction: auth.access_ttl 48h0m0s is longer than auth.refresh_ttl 24h0m0s: an access token must not outlive its login's refresh tokens\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, t.Context(), tt.args...)
			if code != 1 || stderr != tt.want {
				t.Errorf("got exit %d, stderr:\n%s\nwant exit 1, stderr:\n%s", code, stderr, tt.want)
			}
		})
	}
	// --help still prints every flag, and exits 0.
	code, _, stderr := runCmd(t, t.Context(), "serve", "--help")
	if code != 0 || !strings.Contains(stderr, "--hub-heartbeat-interval duration") {
		t.Errorf("--help: got exit %d and %d bytes, want 0 and the usage", code, len(stderr))
	}
}

// TestAuthFailureAndDisconnectLogs: failed authentications are summed up
// in one WARN line per interval (here the final one, at shutdown), not one
// line each; a disconnect is logged at debug with its close code.
func TestAuthFailureAndDisconnectLogs(t *testing.T) {
	var logs lockedBuffer
	m := startServer(t, nil, func(m *Main) {
		m.Logger = newLogger(&logs, "debug", "json")
		m.AuthLogInterval = time.Hour // only the final summary, at Close
	})
	for range 30 {
		if code, _ := apiCall(t, m, "not-a-token", "GET", "/api/v1/devices", nil); code != 401 {
			t.Fatalf("bad token: got %d, want 401", code)
		}
	}
	for range 5 {
		if code, _ := apiCall(t, m, "", "GET", "/api/v1/devices", nil); code != 401 {
			t.Fatalf("no token: got %d, want 401", code)
		}
	}
	c := dialToken(t, m, mintToken(t, m, "alice", "laptop", "browser"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The server sees the close on its own time (the portable transport's
	// reader): wait for it before shutting down, which would close with 1012.
	eventually(t, "the server sees the client's close", func() bool { return m.Hub.ConnOfDevice("laptop") == nil })
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var summaries, disconnects []map[string]any
	lines := logLines(t, logs.String())
	for _, l := range lines {
		switch l["msg"] {
		case "authentication failures":
			summaries = append(summaries, l)
		case "disconnected":
			disconnects = append(disconnects, l)
		}
	}
	if len(summaries) != 1 {
		t.Fatalf("got %d authentication failure lines, want 1: %v", len(summaries), summaries)
	}
	s := summaries[0]
	by, _ := s["by_reason"].(map[string]any)
	if s["level"] != "WARN" || s["count"] != float64(35) || by["malformed"] != float64(30) || by["missing"] != float64(5) {
		t.Errorf("summary: got %v, want WARN, count 35, malformed 30, missing 5", s)
	}
	if len(disconnects) != 1 || disconnects[0]["level"] != "DEBUG" || disconnects[0]["code"] != float64(1000) ||
		disconnects[0]["user"] != "alice" {
		t.Errorf("disconnect lines: got %v, want one DEBUG line for alice with code 1000", disconnects)
	}
	if last := lines[len(lines)-1]; last["msg"] != "stopped" {
		t.Errorf("last line: got %v, want stopped", last)
	}
}
