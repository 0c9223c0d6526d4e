package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// The command as shipped: the junction binary, built by the test, started
// the way an operator does, stopped with SIGTERM.

// buildJunction builds the junction binary into a temporary directory.
func buildJunction(t *testing.T) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the binary tests stop the server with SIGTERM, which Windows does not have")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to build the binary with: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "junction")
	out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// binaryEnv is the test's environment without JUNCTION_ settings (the
// server refuses unknown ones), except the transport scripts/test.sh
// selects, so that the binary runs on it too.
func binaryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JUNCTION_") || strings.HasPrefix(kv, "JUNCTION_HUB_TRANSPORT=") {
			env = append(env, kv)
		}
	}
	return env
}

// lockedBuffer is a bytes.Buffer written by exec's copier and read by the
// test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// served is a running junction serve.
type served struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:PORT
	stdout *lockedBuffer
	stderr *lockedBuffer
	exited chan error
}

var listeningRE = regexp.MustCompile(`listening on (http://127\.0\.0\.1:[0-9]+) `)

// startBinary runs "junction serve args..." on a free loopback port with a
// fresh data directory (returned) and waits for its "listening on" line.
func startBinary(t *testing.T, bin string, args ...string) (*served, string) {
	t.Helper()
	return startBinaryData(t, bin, filepath.Join(t.TempDir(), "data"), args...)
}

// startBinaryData is startBinary on the data directory data.
func startBinaryData(t *testing.T, bin, data string, args ...string) (*served, string) {
	t.Helper()
	args = append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = binaryEnv()
	s := &served{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(s.stdout, pw)
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		pw.Close()
		s.exited <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case s.url = <-found:
	case err := <-s.exited:
		t.Fatalf("junction %s exited before listening: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, s.stdout, s.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("junction %s: no \"listening on\" line in 30s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), s.stdout, s.stderr)
	}
	return s, data
}

// healthz wants 200 from GET /healthz.
func (s *served) healthz(t *testing.T) {
	t.Helper()
	resp, err := http.Get(s.url + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %d %s", resp.StatusCode, body)
	}
}

// term sends SIGTERM and wants exit status 0 (within a minute).
func (s *served) term(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit status 0\nstderr:\n%s", err, s.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("no exit a minute after SIGTERM\nstderr:\n%s", s.stderr)
	}
}

// TestBinaryServeDrainsOnSIGTERM builds junction, runs "junction serve",
// mints tokens with "junction token", connects the Go SDK as a laptop and
// a machine, then sends SIGTERM while the laptop's call to the machine is
// in flight: the call is answered (the drain waits for it), the laptop gets
// server.shutdown and close 1012, the process logs its shutdown and exits 0.
func TestBinaryServeDrainsOnSIGTERM(t *testing.T) {
	bin := buildJunction(t)
	s, data := startBinary(t, bin, "--log-format", "json")
	s.healthz(t)

	mint := func(device, kind, scope string) string {
		t.Helper()
		out, err := exec.Command(bin, "token", "--data", data, "--user", "alice", "--device", device, "--kind", kind, "--scope", scope).Output()
		if err != nil {
			t.Fatalf("junction token: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	wsURL := "ws" + strings.TrimPrefix(s.url, "http") + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The machine holds the call until it sees the server shut down.
	mac := client.New(client.Options{URL: wsURL, Token: mint("mac", "machine", "read")})
	macShutdown := make(chan struct{})
	var macOnce sync.Once
	mac.OnEvent(protocol.EventShutdown, func(*protocol.Frame) { macOnce.Do(func() { close(macShutdown) }) })
	held := make(chan struct{})
	if err := mac.Serve("work.hold", func(ctx context.Context, _ *client.RPCRequest) (any, error) {
		close(held)
		select {
		case <-macShutdown:
			return map[string]bool{"done": true}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := mac.Connect(ctx); err != nil {
		t.Fatalf("connect the machine to the binary: %v", err)
	}
	defer mac.Close()

	shutdown := make(chan protocol.Shutdown, 1)
	c := client.New(client.Options{URL: wsURL, Token: mint("laptop", "browser", "read,write")})
	c.OnEvent(protocol.EventShutdown, func(f *protocol.Frame) {
		var sd protocol.Shutdown
		_ = jsonUnmarshal(f.Data, &sd)
		select {
		case shutdown <- sd:
		default:
		}
	})
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect to the binary: %v", err)
	}
	defer c.Close()
	if err := c.Call(ctx, "sys.ping", nil, nil); err != nil {
		t.Fatalf("sys.ping: %v", err)
	}
	type answer struct {
		res map[string]bool
		err error
	}
	called := make(chan answer, 1)
	go func() {
		var a answer
		a.err = c.CallDevice(ctx, "mac", "work.hold", nil, &a.res)
		called <- a
	}()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the call did not reach the machine")
	}

	s.term(t)
	if a := <-called; a.err != nil || !a.res["done"] {
		t.Errorf("call in flight at SIGTERM: got %v, %v; want it answered by the drain", a.res, a.err)
	}
	select {
	case sd := <-shutdown:
		if sd.ReconnectAfterMs <= 0 {
			t.Errorf("server.shutdown %+v: want a reconnect hint", sd)
		}
	default:
		t.Error("no server.shutdown before the process exited")
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the client did not close after the server exited")
	}
	if code := c.CloseCode(); code != protocol.CloseRestart {
		t.Errorf("close code: got %d, want %d (restart)", code, protocol.CloseRestart)
	}
	if !strings.Contains(s.stdout.String(), "Junction ") {
		t.Errorf("stdout: %q, want the banner", s.stdout)
	}
	if !strings.Contains(s.stderr.String(), `"msg":"shutting down"`) {
		t.Errorf("stderr has no shutdown log:\n%s", s.stderr)
	}
}

// docConfigs returns the YAML blocks of README.md and docs/*.md that are
// server configurations (every top-level key is one of Config's), by file
// and line.
func docConfigs(t *testing.T) map[string]string {
	t.Helper()
	keys := map[string]bool{}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		if tag, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			keys[tag] = true
		}
	}
	files, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	files = append([]string{filepath.Join("..", "..", "README.md")}, files...)
	out := map[string]string{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(raw), "\n")
		for i := 0; i < len(lines); i++ {
			fence := strings.TrimSpace(lines[i])
			if fence != "```yaml" && fence != "```yml" {
				continue
			}
			start := i + 1
			var block []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				block = append(block, lines[i])
			}
			text := strings.Join(block, "\n") + "\n"
			var top map[string]any
			if err := yaml.Unmarshal([]byte(text), &top); err != nil || len(top) == 0 {
				t.Logf("%s:%d: a yaml block that is not a mapping, not a server config", file, start)
				continue
			}
			config := true
			for k := range top {
				config = config && keys[k]
			}
			if !config {
				t.Logf("%s:%d: a yaml block with keys %v, not a server config", file, start, slices.Sorted(maps.Keys(top)))
				continue
			}
			out[filepath.Base(file)+":"+strconv.Itoa(start)] = text
		}
	}
	return out
}

// TestBinaryStartsWithEveryDocsConfig starts the binary with each example
// configuration of the documents, as "junction serve --config FILE"
// (listening on a free loopback port instead of the example's address),
// checks /healthz and stops it with SIGTERM.
func TestBinaryStartsWithEveryDocsConfig(t *testing.T) {
	configs := docConfigs(t)
	// README's example file, docs/channels.md's namespace, docs/rpc.md's grants, docs/scheduler.md's jobs.
	for _, want := range []string{"README.md", "channels.md", "rpc.md", "scheduler.md"} {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(configs)), func(k string) bool { return strings.HasPrefix(k, want+":") }) {
			t.Errorf("no server config found in %s: its example moved or changed form", want)
		}
	}
	bin := buildJunction(t)
	for _, name := range slices.Sorted(maps.Keys(configs)) {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "junction.yaml")
			if err := os.WriteFile(file, []byte(configs[name]), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"--config", file}
			// A config naming Redis runs on a real redis-server of the
			// test's own (the flag beats the file, as --addr does).
			redis := regexp.MustCompile(`(?m)^broker: *redis`).MatchString(configs[name])
			if redis {
				args = append(args, "--broker", redistest.New(t, redistest.Options{}).URL())
			}
			s, _ := startBinary(t, bin, args...)
			s.healthz(t)
			if redis && !strings.Contains(s.stderr.String(), "redis (1 shard)") {
				t.Errorf("the start line names another broker than redis:\n%s", s.stderr)
			}
			s.term(t)
		})
	}
}
