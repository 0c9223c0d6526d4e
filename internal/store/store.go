// Package store is Junction's durable storage: accounts, devices, refresh
// tokens, pairing codes, encrypted sessions, machines and artifacts with
// versions, per-session messages, the per-account update log, idempotency
// records and apps.
//
// One concrete type, *DB, speaks two dialects: SQLite (pure Go, the embedded
// default) and PostgreSQL (pgx). Both run the same SQL with "$N" parameters
// and the same embedded migrations; the few differences (blob type, row
// locks, pool shape) live in sqlite.go and postgres.go. The same test suite
// runs against both.
//
// Invariants every method keeps:
//   - A write happens in one transaction; a failed write changes nothing.
//   - Every change to an account-visible object (session, message, machine,
//     artifact, device) inserts an Update with the account's next sequence
//     number in the same transaction, so the update log is gap-free and in
//     commit order. Mutating methods return the updates they created so the
//     caller can publish them live.
//   - Encrypted fields are opaque bytes, stored and returned as given.
//   - Objects are scoped by account: another account's id answers ErrNotFound.
//
// Lock order (PostgreSQL row locks: an object row first, the account's
// counter row last, see emit): docs/LOCKORDER.md.
//
// Interfaces that callers need (web, auth) are declared in those packages;
// *DB satisfies them.
package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sentinel errors. Callers match them with errors.Is; internal/web maps them
// to protocol error codes and HTTP statuses.
var (
	// ErrNotFound reports that the object does not exist or belongs to
	// another account.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict reports an expected-version mismatch; the error is a
	// *ConflictError carrying the current version and value.
	ErrConflict = errors.New("store: version conflict")
	// ErrRefreshReuse reports that an already-used refresh token was
	// presented again; its whole family has been revoked.
	ErrRefreshReuse = errors.New("store: refresh token reused")
	// ErrExpired reports a token, code or record past its expiry.
	ErrExpired = errors.New("store: expired")
	// ErrRevoked reports a revoked token, family or device.
	ErrRevoked = errors.New("store: revoked")
	// ErrDuplicate reports a unique key that already exists (a public key,
	// an app key id, a token hash).
	ErrDuplicate = errors.New("store: duplicate")
	// ErrTooLarge reports an encrypted field or batch over the configured
	// limit.
	ErrTooLarge = errors.New("store: too large")
	// ErrInvalid reports an argument the store cannot accept (a bad cursor,
	// a malformed hash, an empty required field).
	ErrInvalid = errors.New("store: invalid argument")
)

// ConflictError is returned (wrapped) when an update's expected version does
// not match. errors.Is(err, ErrConflict) is true for it.
type ConflictError struct {
	// Current is the field's current version.
	Current int64
	// Value is the field's current value, so the client can merge and retry.
	Value []byte
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: version conflict: current version %d", e.Current)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Defaults for Options fields left at zero.
const (
	DefaultMaxValueBytes   = 1 << 20
	DefaultUpdateRetention = 10000
	DefaultPageLimit       = 50
	// MaxPageLimit caps Page.Limit for object lists and message pages.
	MaxPageLimit = 100
	// MaxUpdatesLimit caps the limit of UpdatesSince.
	MaxUpdatesLimit = 1000
	// MaxBatch caps the number of messages in one AppendMessages call.
	MaxBatch = 100
)

// Options configures a DB. The zero value uses the documented defaults.
type Options struct {
	// MaxValueBytes is the largest encrypted field (metadata, state, header,
	// body, message body) accepted. Default 1 MiB.
	MaxValueBytes int
	// UpdateRetention is the number of updates kept per account. Older
	// updates are pruned in the writing transaction (with a little slack so
	// pruning is amortized); UpdatesSince answers reset=true for a sequence
	// older than what is kept. Default 10,000.
	UpdateRetention int
	// UpdateMaxAge, when positive, also drops updates older than this in
	// Prune. Zero keeps updates regardless of age.
	UpdateMaxAge time.Duration
	// MaxConns bounds the PostgreSQL pool and the SQLite read pool.
	// Default 16 for PostgreSQL, 4 for SQLite readers. The SQLite write pool
	// is always one connection.
	MaxConns int
	// ConnectTimeout bounds opening one PostgreSQL connection (the dial and
	// the handshake). Default 5s; a connect_timeout in the DSN wins.
	ConnectTimeout time.Duration
	// StatementTimeout is PostgreSQL's statement_timeout for every
	// connection of the pool: a statement running longer is cancelled by
	// the server. Default 0: none (a statement_timeout in the DSN applies).
	StatementTimeout time.Duration
	// ConnMaxLifetime closes a PostgreSQL connection this long after it was
	// opened (at its next release), so that connections follow a failover
	// or a load balancer in front of the database. Default 30m; negative
	// keeps connections forever.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime closes a PostgreSQL connection idle this long.
	// Default 5m; negative keeps idle connections.
	ConnMaxIdleTime time.Duration
	// Now is the clock; default time.Now. Tests inject a fake one.
	Now func() time.Time
	// DeviceCacheTTL is how long DeviceStatus and LoginStatus trust a
	// "live" or "unknown" answer they read, and how often DeviceRevoked and
	// LoginRevoked read again the revocations they hold in memory
	// (revoked.go): revocations made through this DB count at once; a
	// revocation made by another process sharing the database is seen
	// after at most this. Default 1s; negative disables both: every check
	// asks the database.
	DeviceCacheTTL time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.UpdateRetention <= 0 {
		o.UpdateRetention = DefaultUpdateRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DeviceCacheTTL == 0 {
		o.DeviceCacheTTL = time.Second
	}
	return o
}

// dialect names the SQL flavor a DB speaks.
type dialect int

const (
	dialectSQLite dialect = iota + 1
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is the store. It is safe for concurrent use. Create it with Open, call
// Migrate before use, and Close when done.
type DB struct {
	dialect dialect // set once in Open
	opts    Options // set once in Open, defaults applied

	// w runs write transactions; r runs reads. On PostgreSQL they are the
	// same pool. On SQLite w has exactly one connection (see sqlite.go).
	w *sql.DB
	r *sql.DB

	// forUpdate is " FOR UPDATE" on PostgreSQL and "" on SQLite, where the
	// single writer already serializes write transactions.
	forUpdate string

	// hookAfterMessageInsert, when set by tests, runs inside the
	// AppendMessages transaction after the rows are inserted; an error from
	// it must roll the whole batch back.
	hookAfterMessageInsert func() error

	stmts   stmts       // prepared hot statements (cache.go)
	devices deviceCache // DeviceStatus answers (cache.go)
	logins  deviceCache // LoginStatus answers (cache.go)
	revoked revocations // DeviceRevoked and LoginRevoked answers (revoked.go)

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the database named by dsn without changing it (call
// Migrate to create or upgrade the schema). dsn is "postgres://..." or
// "postgresql://..." or a key=value string for PostgreSQL, and
// "sqlite:PATH", "file:PATH" or a file path starting with /, ./ or ../ for
// SQLite (see ParseDSN); missing SQLite files are created.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	db := &DB{opts: opts.withDefaults()}
	dialect, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	if dialect == "postgres" {
		err = db.openPostgres(strings.TrimSpace(dsn))
	} else {
		err = db.openSQLite(dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := db.firstPing(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", db.dialect, err)
	}
	return db, nil
}

// firstPing is Ping, tried again for up to 10 s while SQLite answers busy:
// switching a new file to WAL takes a lock that SQLite's busy handler does
// not wait for, so processes opening the same new database at once can be
// refused immediately (seen with concurrent migrators).
func (db *DB) firstPing(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	wait := 5 * time.Millisecond
	for {
		err := db.Ping(ctx)
		if err == nil || !db.retryable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// Dialect reports "sqlite" or "postgres".
func (db *DB) Dialect() string { return db.dialect.String() }

// Ping checks that the database answers, for /readyz.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.w.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if db.r != db.w {
		if err := db.r.PingContext(ctx); err != nil {
			return fmt.Errorf("store: ping readers: %w", err)
		}
	}
	return nil
}

// Close closes the pools. It is safe to call more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closeStmts()
		var errs []error
		if db.r != nil && db.r != db.w {
			errs = append(errs, db.r.Close())
		}
		if db.w != nil {
			errs = append(errs, db.w.Close())
		}
		if err := errors.Join(errs...); err != nil {
			db.closeErr = fmt.Errorf("store: close: %w", err)
		}
	})
	return db.closeErr
}

func (db *DB) now() time.Time { return db.opts.Now().UTC() }

// commitThen is returned by a write function that wants its transaction
// committed and err returned to the caller anyway (refresh reuse revokes
// the family and still fails).
type commitThen struct{ err error }

func (c commitThen) Error() string { return c.err.Error() }
func (c commitThen) Unwrap() error { return c.err }

// write runs fn in a write transaction and commits it. fn may run more than
// once (PostgreSQL deadlock or serialization failures are retried), so it
// must assign its results rather than append to state outside it.
func (db *DB) write(ctx context.Context, step string, fn func(tx *sql.Tx) error) error {
	const attempts = 3
	var err error
	for i := 0; i < attempts; i++ {
		err = db.writeOnce(ctx, fn)
		if err == nil || !db.retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		var ct commitThen
		if errors.As(err, &ct) {
			return ct.err
		}
		return fmt.Errorf("store: %s: %w", step, err)
	}
	return nil
}

func (db *DB) writeOnce(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		var ct commitThen
		if errors.As(err, &ct) {
			if cerr := tx.Commit(); cerr != nil {
				return fmt.Errorf("commit: %w", cerr)
			}
			return err
		}
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// read runs fn in a read-only transaction that sees one snapshot.
func (db *DB) read(ctx context.Context, step string, fn func(tx *sql.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if db.dialect == dialectPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.r.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("store: %s: begin: %w", step, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return fmt.Errorf("store: %s: %w", step, err)
	}
	return nil
}

// queryer is satisfied by *sql.DB and *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// newID returns a 26-character lowercase id: 48 bits of milliseconds then 80
// random bits, base32 (hex alphabet, which keeps byte order), so ids sort by
// creation time and cursor pages follow creation order. Within a process
// ids only grow: one made in the same millisecond as the last (or after
// the clock stepped back) is the last plus one, as ULIDs' monotonic mode
// does, so that "newest first" holds for ids made within a millisecond too.
func newID(now time.Time) string { return ids.next(now) }

// ids makes the process's ids (newID).
var ids idGen

// idGen makes ids that only grow (newID).
type idGen struct {
	mu   sync.Mutex
	last [16]byte // guarded by mu: the last id made
}

func (g *idGen) next(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic("store: crypto/rand: " + err.Error()) // never fails on Linux
	}
	g.mu.Lock()
	if bytes.Compare(b[:6], g.last[:6]) <= 0 {
		b = g.last
		for i := len(b) - 1; i >= 0; i-- {
			if b[i]++; b[i] != 0 {
				break
			}
		}
	}
	g.last = b
	g.mu.Unlock()
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// HashToken returns the SHA-256 of a secret (refresh token, pairing code).
// The store keeps only such hashes.
func HashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Times are stored as BIGINT Unix microseconds (UTC) in both dialects, so
// one code path scans them; 0 means "never" for optional times.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// nonNil turns nil into an empty slice: NOT NULL blob columns reject nil.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (db *DB) checkSize(what string, b []byte) error {
	if len(b) > db.opts.MaxValueBytes {
		return fmt.Errorf("store: %s is %d bytes, limit %d: %w", what, len(b), db.opts.MaxValueBytes, ErrTooLarge)
	}
	return nil
}

// placeholders returns "($k,$k+1,...),(...)" for rows×cols parameters
// starting at $start on PostgreSQL, and the same shape with bare "?" on
// SQLite: the SQLite driver binds "$N" by searching the argument list for
// each parameter (quadratic: 700 parameters cost more than the insert), bare
// "?" by position. Statements built with it must number every parameter in
// order of appearance, so "$N" and "?" agree.
func (db *DB) placeholders(start, rows, cols int) string {
	var sb strings.Builder
	n := start
	for r := 0; r < rows; r++ {
		if r > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		for c := 0; c < cols; c++ {
			if c > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(db.param(n))
			n++
		}
		sb.WriteByte(')')
	}
	return sb.String()
}

// param returns the n-th parameter marker of a statement whose parameters
// appear in order: "$n" on PostgreSQL, "?" on SQLite (see placeholders).
func (db *DB) param(n int) string {
	if db.dialect == dialectSQLite {
		return "?"
	}
	return "$" + strconv.Itoa(n)
}
