// Package redistest starts real, throwaway redis-server processes for
// tests: each in its own temporary directory, listening only on a free
// 127.0.0.1 port, with no Unix socket and protected mode on. Persistence is
// chosen per server (Options.AOF: append-only file with fsync on every
// write, or no persistence at all), and a server can be killed and
// restarted on the same port with its data kept or lost, which is how the
// broker's failure tests make Redis lose data for real.
//
// redis-server is a direct child of the test process in its own process
// group and gets SIGKILL if the test process dies, so no server outlives
// its test. Stop removes everything.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvRequire names the environment variable that, set to "1", turns a
// missing redis-server from a skip into a failure (scripts/test.sh sets it).
const EnvRequire = "JUNCTION_REQUIRE_REDIS"

// ErrNotInstalled reports that redis-server could not be found.
var ErrNotInstalled = errors.New("redistest: redis-server not found in PATH or /usr/bin; run scripts/test-deps.sh")

// Options configure a server.
type Options struct {
	// AOF turns the append-only file on with appendfsync always: every
	// acknowledged write survives a kill. Off, the server persists nothing
	// (no AOF, no RDB snapshots): a restart starts empty.
	AOF bool
}

// Server is a running throwaway redis-server.
type Server struct {
	opts Options // set once
	bin  string  // set once
	dir  string  // set once: temp dir holding data/ and the log; removed by Stop
	port int     // set once: TCP port on 127.0.0.1, kept across restarts

	mu      sync.Mutex // guards cmd, done, stopped
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	stopped bool
}

// FindBin returns the path of redis-server: PATH first, then /usr/bin.
func FindBin() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if st, err := os.Stat("/usr/bin/redis-server"); err == nil && st.Mode()&0o111 != 0 {
		return "/usr/bin/redis-server", nil
	}
	return "", ErrNotInstalled
}

// Start starts a server. The caller must Stop it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "junction-redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: temp dir: %w", err)
	}
	s := &Server{opts: opts, bin: bin, dir: dir}
	if err := os.Mkdir(s.dataDir(), 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("redistest: data dir: %w", err)
	}
	// A port picked by the kernel may be taken again before redis-server
	// binds it; retry a few times.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err == nil {
			err = s.start(ctx)
		}
		if err == nil {
			return s, nil
		}
		if attempt == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "redis.log") }

// start runs redis-server on s.port and waits until it answers PING.
func (s *Server) start(ctx context.Context) error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--unixsocket", "",
		"--protected-mode", "yes",
		"--dir", s.dataDir(),
		"--logfile", s.logPath(),
		"--daemonize", "no",
		"--save", "",
		"--databases", "1",
	}
	if s.opts.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { // exits when redis-server does; kill and Stop wait on done
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redistest: redis-server exited during start-up:\n%s", s.Log())
		default:
		}
		err := s.ping()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.kill()
			return fmt.Errorf("redistest: redis-server not ready: %w\n%s", err, s.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends PING in RESP and wants +PONG (a server loading its AOF
// answers -LOADING).
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("ping: got %q", strings.TrimSpace(line))
	}
	return nil
}

// Addr returns host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL returns the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// Log returns what redis-server has logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
// Acknowledged writes survive only with Options.AOF.
func (s *Server) Kill() {
	s.kill()
}

// Restart kills the server (SIGKILL) and starts it again on the same port.
// With keepData false its data directory is emptied first, so the new
// server starts empty whatever the persistence; with keepData true it
// loads what it persisted (everything acknowledged, with Options.AOF;
// nothing, without).
func (s *Server) Restart(ctx context.Context, keepData bool) error {
	s.kill()
	if !keepData {
		if err := os.RemoveAll(s.dataDir()); err != nil {
			return fmt.Errorf("redistest: empty data dir: %w", err)
		}
		if err := os.Mkdir(s.dataDir(), 0o700); err != nil {
			return fmt.Errorf("redistest: data dir: %w", err)
		}
	}
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the old socket may linger briefly
		if err = s.start(ctx); err == nil || !strings.Contains(err.Error(), "ddress already in use") {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Stop kills the server and removes its directory. It is safe to call more
// than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.kill()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("redistest: remove %s: %w", s.dir, err)
	}
	return nil
}

// kill ends the process group of redis-server and waits for it.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	killGroup(cmd.Process)
	<-done
}

// Do sends one command to the server on a fresh connection and returns the
// first line of its reply (a test's way to run CLIENT KILL, FLUSHALL, ...
// without a client library).
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "-") {
		return line, fmt.Errorf("redis: %s", line[1:])
	}
	return line, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// New starts a server for t and stops it when t ends. When redis-server is
// not installed it skips the test loudly, or fails it when
// JUNCTION_REQUIRE_REDIS=1.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Require skips t when redis-server is missing, or fails it when
// JUNCTION_REQUIRE_REDIS=1.
func Require(t testing.TB) {
	t.Helper()
	if _, err := FindBin(); err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%v (and %s=1)", err, EnvRequire)
		}
		t.Skip("SKIPPING REDIS TESTS: ", err, " (set "+EnvRequire+"=1 to make this a failure)")
	}
}
