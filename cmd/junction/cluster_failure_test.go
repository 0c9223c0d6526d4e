package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/internal/store/pgtest"
)

// The failure tests of a cluster with real processes: redis-server and
// PostgreSQL on free loopback ports, N junction processes built from this
// module sharing them (and one signing secret), and Debian's HAProxy in
// front (TCP mode, round robin, health checks on each node, redispatch of
// a connection whose node refuses it). Bounded: a few processes, a few
// hundred publications, loopback only.

// failureCluster is a running cluster of junction processes.
type failureCluster struct {
	t     *testing.T
	bin   string
	rs    *redistest.Server
	nodes []*served
	data  []string // each node's data directory
	lbURL string   // ws://127.0.0.1:PORT/ws: HAProxy's frontend
}

// failureConfig is every node's configuration file: a namespace with
// history (resume), no per-connection request limit (the publisher).
const failureConfig = `hub:
  requests_per_second: -1
  namespaces:
    - pattern: "feed:{id}"
      subscribe: ["any"]
      publish: ["scope=write"]
      history_size: 1000
`

// startFailureCluster starts n nodes and HAProxy. It skips when HAProxy or
// PostgreSQL is not installed (scripts/test-deps.sh installs them).
func startFailureCluster(t *testing.T, n int) *failureCluster {
	t.Helper()
	return startFailureClusterWith(t, failureOptions{nodes: n})
}

// failureOptions vary the cluster startFailureClusterWith starts.
type failureOptions struct {
	nodes  int
	config string // every node's configuration file; failureConfig when empty
	// broker, when set, returns node i's broker URL given Redis's (a proxy
	// in front of it, for instance); every node uses Redis's URL otherwise.
	broker func(i int, redisURL string) string
}

// startFailureClusterWith is startFailureCluster with options.
func startFailureClusterWith(t *testing.T, o failureOptions) *failureCluster {
	t.Helper()
	n := o.nodes
	if o.config == "" {
		o.config = failureConfig
	}
	if testing.Short() {
		t.Skip("the cluster failure tests start several processes")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			t.Skip("haproxy not installed; run scripts/test-deps.sh")
		}
		haproxy = "/usr/sbin/haproxy"
	}
	redistest.Require(t)
	pg, err := pgtest.Start(context.Background())
	if errors.Is(err, pgtest.ErrNotInstalled) && os.Getenv(pgtest.EnvRequire) != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	db, err := pg.CreateDB(context.Background()) // a DSN
	if err != nil {
		t.Fatal(err)
	}
	fc := &failureCluster{t: t, bin: buildJunction(t), rs: redistest.New(t, redistest.Options{AOF: true})}
	cfgFile := filepath.Join(t.TempDir(), "junction.yaml")
	if err := os.WriteFile(cfgFile, []byte(o.config), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		data := filepath.Join(t.TempDir(), "data")
		if i > 0 {
			// One signing secret and one API-key pepper for every node.
			if err := os.MkdirAll(data, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"secret.key", "apikey-pepper.key"} {
				b, err := os.ReadFile(filepath.Join(fc.data[0], f))
				if err != nil {
					continue
				}
				if err := os.WriteFile(filepath.Join(data, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		broker := fc.rs.URL()
		if o.broker != nil {
			broker = o.broker(i, broker)
		}
		s, _ := startBinaryData(t, fc.bin, data, "--config", cfgFile, "--broker", broker,
			"--database", db, "--hub-node-id", fmt.Sprintf("node%d", i+1))
		fc.nodes = append(fc.nodes, s)
		fc.data = append(fc.data, data)
	}
	fc.lbURL = "ws://" + startHAProxy(t, haproxy, fc.nodes) + "/ws"
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the nodes logged: the first thing to read when a failure
		// test fails in CI.
		for i, s := range fc.nodes {
			t.Logf("node%d stderr (last 8 KB):\n%s", i+1, lastBytes(s.stderr.String(), 8<<10))
		}
	})
	return fc
}

// lastBytes is the end of s, at most n bytes, from a line start.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// haproxyDeployConfig is the HAProxy configuration the deployment guide
// gives (docs/deploy/cluster.md): the tests run that very file, so that
// the guide stays true.
const haproxyDeployConfig = "../../docs/deploy/haproxy.cfg"

var (
	haproxyServerRE  = regexp.MustCompile(`(?m)^(\s*server node([0-9]+) )10\.0\.0\.1[0-9]:7700( .*)$`)
	haproxyMaxconnRE = regexp.MustCompile(`(?m)^(\s*maxconn )[0-9]+$`)
)

// haproxyConfig is docs/deploy/haproxy.cfg with its frontend bound to addr,
// one server line per node at the node's loopback address, and a maxconn
// the test's file descriptor limit allows.
func haproxyConfig(t *testing.T, addr string, nodes []*served) string {
	t.Helper()
	raw, err := os.ReadFile(haproxyDeployConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	const bind = "bind 0.0.0.0:7700"
	if strings.Count(cfg, bind) != 1 {
		t.Fatalf("%s: want one %q line", haproxyDeployConfig, bind)
	}
	cfg = strings.Replace(cfg, bind, "bind "+addr, 1)
	if m := haproxyServerRE.FindAllString(cfg, -1); len(m) != len(nodes) {
		t.Fatalf("%s has %d server lines (10.0.0.1N:7700), the test runs %d nodes", haproxyDeployConfig, len(m), len(nodes))
	}
	cfg = haproxyServerRE.ReplaceAllStringFunc(cfg, func(line string) string {
		m := haproxyServerRE.FindStringSubmatch(line)
		i, _ := strconv.Atoi(m[2])
		if i < 1 || i > len(nodes) {
			t.Fatalf("%s: server node%s, the test runs %d nodes", haproxyDeployConfig, m[2], len(nodes))
		}
		return m[1] + strings.TrimPrefix(nodes[i-1].url, "http://") + m[3]
	})
	if !haproxyMaxconnRE.MatchString(cfg) {
		t.Fatalf("%s: no maxconn line", haproxyDeployConfig)
	}
	return haproxyMaxconnRE.ReplaceAllString(cfg, "${1}2000")
}

// startHAProxy runs HAProxy in the foreground in front of nodes and returns
// its frontend's address once it accepts connections.
func startHAProxy(t *testing.T, bin string, nodes []*served) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfgText := haproxyConfig(t, addr, nodes)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not accept on %s after 10s: %s", addr, out)
		}
		time.Sleep(20 * time.Millisecond) // polls the listener; nothing is ordered by it
	}
}

// token mints a phone's token with the cluster's secret (junction token).
func (fc *failureCluster) token(user, device string) string {
	fc.t.Helper()
	return fc.tokenOf(user, device, "phone")
}

func (fc *failureCluster) tokenOf(user, device, kind string) string {
	fc.t.Helper()
	out, err := exec.Command(fc.bin, "token", "--data", fc.data[0], "--user", user, "--device", device, "--kind", kind).Output()
	if err != nil {
		fc.t.Fatalf("junction token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// kill9 kills node i with SIGKILL and waits for it to be gone.
func (fc *failureCluster) kill9(i int) {
	fc.t.Helper()
	s := fc.nodes[i]
	if err := s.cmd.Process.Kill(); err != nil {
		fc.t.Fatal(err)
	}
	<-s.exited
}

// wsURL returns node i's WebSocket URL (not through HAProxy).
func (fc *failureCluster) wsURL(i int) string {
	return "ws" + strings.TrimPrefix(fc.nodes[i].url, "http") + "/ws"
}

// TestClusterFailureRPCTargetKilled: a caller on node 1 calls a machine on
// node 2; node 2 is killed with SIGKILL mid-call. The call fails with
// unavailable within two node lease periods (12 s), not at its one-minute
// timeout; the machine reconnecting to node 3 is called there.
func TestClusterFailureRPCTargetKilled(t *testing.T) {
	fc := startFailureCluster(t, 3)
	ctx := context.Background()
	started := make(chan struct{}, 1)
	connect := func(c *client.Client) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.Connect(cctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	serve := func(node int) {
		m := client.New(client.Options{URL: fc.wsURL(node), Token: fc.tokenOf("alice", "m1", "machine")})
		_ = m.Serve("job.block", func(ctx context.Context, req *client.RPCRequest) (any, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return nil, ctx.Err()
		})
		_ = m.Serve("job.echo", func(ctx context.Context, req *client.RPCRequest) (any, error) {
			return map[string]int{"node": node + 1}, nil
		})
		connect(m)
	}
	serve(1)
	caller := client.New(client.Options{URL: fc.wsURL(0), Token: fc.token("alice", "phone1")})
	connect(caller)
	errc := make(chan error, 1)
	go func() {
		errc <- caller.CallDevice(ctx, "m1", "job.block", nil, nil, client.WithCallTimeout(time.Minute))
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach the machine on node 2 within 10s")
	}
	killed := time.Now()
	fc.kill9(1)
	select {
	case err := <-errc:
		if code := errCode(err); code != "unavailable" {
			t.Fatalf("call whose target's node was killed: got %v, want unavailable", err)
		}
		if d := time.Since(killed); d > 12*time.Second {
			t.Fatalf("the call failed %v after the kill, want within two node lease periods (12s)", d)
		}
		t.Logf("failed %v after the kill", time.Since(killed).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the call still waits 20s after its target's node was killed")
	}
	serve(2)
	var res struct{ Node int }
	if err := caller.CallDevice(ctx, "m1", "job.echo", nil, &res); err != nil || res.Node != 3 {
		t.Fatalf("call to the machine on node 3: %+v, %v", res, err)
	}
}

// TestClusterFailureKillNode: three junction processes behind HAProxy;
// subscribers connect through HAProxy (round robin: some land on each
// node), a publisher publishes on node 3. Node 1 is killed with SIGKILL in
// the middle of the stream: its subscribers reconnect through HAProxy to
// another node and resume from their position; every subscriber receives
// every publication exactly once, in order, and those of node 1 say their
// resubscription was recovered.
func TestClusterFailureKillNode(t *testing.T) {
	fc := startFailureCluster(t, 3)
	const subscribers, total = 6, 400
	type sub struct {
		c    *client.Client
		node string
		mu   sync.Mutex
		got  []int
		subs []client.Subscribed
	}
	ctx := context.Background()
	var all []*sub
	for i := range subscribers {
		s := &sub{}
		s.c = client.New(client.Options{URL: fc.lbURL, Token: fc.token("alice", fmt.Sprintf("sub%d", i)),
			Reconnect: true, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := s.c.Connect(cctx); err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.c.Close() })
		s.node = s.c.Welcome().NodeID
		if _, err := s.c.SubscribeWith(cctx, "feed:1", func(p client.Publication) {
			var n int
			_ = json.Unmarshal(p.Data, &n)
			s.mu.Lock()
			s.got = append(s.got, n)
			s.mu.Unlock()
		}, client.SubscribeOptions{OnSubscribed: func(x client.Subscribed) {
			s.mu.Lock()
			s.subs = append(s.subs, x)
			s.mu.Unlock()
		}}); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		all = append(all, s)
	}
	onVictim := 0
	for _, s := range all {
		if s.node == "node1" {
			onVictim++
		}
	}
	if onVictim == 0 {
		t.Fatalf("no subscriber landed on node1 through HAProxy: %v", func() (n []string) {
			for _, s := range all {
				n = append(n, s.node)
			}
			return
		}())
	}
	count := func(s *sub) int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.got) }
	minCount := func() int {
		m := total
		for _, s := range all {
			m = min(m, count(s))
		}
		return m
	}

	pub := client.New(client.Options{URL: "ws" + strings.TrimPrefix(fc.nodes[2].url, "http") + "/ws",
		Token: fc.token("bob", "pub"), Reconnect: true})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pub.Connect(cctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= total; i++ {
			if _, _, err := pub.Publish(ctx, "feed:1", i); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	})
	eventuallyLong(t, "a quarter of the stream at every subscriber", func() bool { return minCount() >= total/4 })
	atKill := minCount()
	fc.kill9(0)
	wg.Wait()
	eventuallyLong(t, "every publication at every subscriber", func() bool { return minCount() >= total })
	t.Logf("%d of %d subscribers on node1; killed with %d publications at every subscriber", onVictim, subscribers, atKill)
	want := seq(1, total)
	for i, s := range all {
		s.mu.Lock()
		if !slices.Equal(s.got, want) {
			t.Errorf("subscriber %d (first on %s): got %d publications %v..., want 1..%d exactly once in order",
				i, s.node, len(s.got), s.got[:min(len(s.got), 20)], total)
		}
		if s.node == "node1" {
			last := s.subs[len(s.subs)-1]
			if len(s.subs) < 2 || !last.Resubscribed || !last.Recovered {
				t.Errorf("subscriber %d of the killed node: subscriptions %+v, want a recovered resubscription", i, s.subs)
			}
			if now := s.c.Welcome().NodeID; now == "node1" {
				t.Errorf("subscriber %d still on node1 after it was killed", i)
			}
		}
		s.mu.Unlock()
	}
}
