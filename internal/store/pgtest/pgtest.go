// Package pgtest starts a real, throwaway PostgreSQL server for tests: a
// fresh cluster (initdb) in a temporary directory, listening only on a free
// 127.0.0.1 port and a private Unix socket directory, with durability off
// (fsync, synchronous_commit, full_page_writes) for speed. Stop removes
// everything.
//
// PostgreSQL refuses to run as root. When the test runs as root, initdb and
// postgres run as an unprivileged user ("postgres" if it exists, else
// "nobody") through SysProcAttr.Credential, which is what runuser does
// minus PAM; the temporary directory is chowned to that user. postgres is a
// direct child of the test process (not daemonized by pg_ctl) and gets
// SIGKILL if the test process dies, so no server outlives its test.
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// EnvRequire names the environment variable that, set to "1", turns a
// missing PostgreSQL installation from a skip into a failure (CI sets it).
const EnvRequire = "JUNCTION_REQUIRE_POSTGRES"

// ErrNotInstalled reports that initdb or postgres could not be found.
var ErrNotInstalled = errors.New("pgtest: postgresql binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin; run scripts/test-deps.sh")

// Server is a running throwaway PostgreSQL.
type Server struct {
	dir  string // temp dir: data/, socket, log; removed by Stop
	port int    // TCP port on 127.0.0.1
	user string // superuser name inside the cluster

	cmd  *exec.Cmd     // the postgres process
	done chan struct{} // closed when cmd has exited
	log  *bytes.Buffer // postgres output; guarded by logMu
	mu   sync.Mutex    // guards stopped, dbSeq
	// logMu guards log, written by the exec package's copying goroutine.
	logMu   sync.Mutex
	stopped bool
	dbSeq   int
}

// FindBin returns the directory holding initdb and postgres: PATH first,
// then the newest /usr/lib/postgresql/*/bin.
func FindBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start creates and starts a cluster. The caller must Stop it.
func Start(ctx context.Context) (*Server, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	cred, err := unprivileged()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "junction-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	s := &Server{dir: dir, user: "postgres", log: &bytes.Buffer{}}
	fail := func(err error) (*Server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := chownTo(dir, cred); err != nil {
		return fail(fmt.Errorf("pgtest: chown temp dir: %w", err))
	}

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", s.user, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = childEnv()
	initdb.SysProcAttr = initdbAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pgtest: initdb: %w\n%s", err, out))
	}

	// A port picked by the kernel may be taken again before postgres binds
	// it; retry a few times.
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			return fail(err)
		}
		err = s.startPostgres(ctx, bin, cred)
		if err == nil {
			return s, nil
		}
		if attempt == 2 {
			return fail(err)
		}
	}
}

func (s *Server) startPostgres(ctx context.Context, bin string, cred *credential) error {
	done := make(chan struct{})
	s.done = done
	s.logMu.Lock()
	s.log.Reset()
	s.logMu.Unlock()
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-k", s.dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
	)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	w := lockedWriter{mu: &s.logMu, b: s.log}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = postgresAttr(cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd
	go func() { // exits when postgres does; Stop and kill wait on done
		cmd.Wait()
		close(done)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("pgtest: postgres exited during start-up:\n%s", s.Log())
		default:
		}
		if err := s.ping(ctx, "postgres"); err == nil {
			return nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			s.kill()
			return fmt.Errorf("pgtest: postgres not ready: %w\n%s", err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) ping(ctx context.Context, db string) error {
	c, err := sql.Open("pgx", s.DSN(db))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.PingContext(ctx)
}

// DSN returns the connection string of database name on this server.
func (s *Server) DSN(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", s.user, s.port, name)
}

// Port returns the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// CreateDB creates a new, empty database and returns its DSN. Names are
// generated, so tests running in parallel never share one.
func (s *Server) CreateDB(ctx context.Context) (string, error) {
	s.mu.Lock()
	s.dbSeq++
	name := fmt.Sprintf("t%d_%d", s.dbSeq, time.Now().UnixNano()%1e6)
	s.mu.Unlock()
	c, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// Log returns what postgres has printed so far.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// Stop shuts the server down (fast shutdown, then SIGKILL after 10 s) and
// removes its directory. It is safe to call more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(os.Interrupt) // fast shutdown
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.kill()
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("pgtest: remove %s: %w", s.dir, err)
	}
	return nil
}

// kill ends the whole process group of postgres and waits for it.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	killGroup(s.cmd.Process)
	<-s.done
}

// childEnv is a minimal environment: the C locale, so the server's messages
// and collation do not depend on the host.
func childEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "LANG=C", "TZ=UTC"}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Shared starts one server on first use and hands the same one to every
// later caller; Stop it from TestMain after m.Run (StopShared). A package's
// tests share the server and isolate themselves with CreateDB.
type Shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Get returns the shared server, starting it on first call. It returns
// ErrNotInstalled (possibly wrapped) when PostgreSQL is absent.
func (sh *Shared) Get() (*Server, error) {
	sh.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sh.srv, sh.err = Start(ctx)
	})
	return sh.srv, sh.err
}

// Stop stops the shared server if it was started.
func (sh *Shared) Stop() error {
	sh.once.Do(func() { sh.err = errors.New("pgtest: never started") })
	if sh.srv != nil {
		return sh.srv.Stop()
	}
	return nil
}

// TB is the subset of testing.TB that DB uses.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Context() context.Context
}

// DB returns the DSN of a new database on the shared server. When
// PostgreSQL is not installed it skips the test loudly, or fails it when
// JUNCTION_REQUIRE_POSTGRES=1.
func (sh *Shared) DB(t TB) string {
	t.Helper()
	srv, err := sh.Get()
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%v (and %s=1)", err, EnvRequire)
		}
		t.Skip("SKIPPING POSTGRESQL TESTS: ", err, " (set "+EnvRequire+"=1 to make this a failure)")
	}
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := srv.CreateDB(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}
