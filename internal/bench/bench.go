// Package bench is the load generator behind 'junction bench': it speaks
// Junction's protocol to a server on this machine (loopback addresses only)
// and measures connects, idle memory, sys.ping round trips, fan-out and
// relayed RPC calls, printing one JSON line (see BENCHMARKS.md).
//
// cmd/junction dispatches the command: ParseFlags reads its flags, the
// command supplies the token Minter (the data directory's key), and Run
// runs the scenario. With --procs, Run re-executes the running binary as
// "EXE bench ARGS --child=i ...": the binary's bench command must lead here.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config is the parsed command line of 'junction bench' (see ParseFlags).
type Config struct {
	URL       string
	Scenario  string
	Conns     int
	Token     string
	Data      string
	Alg       string
	Duration  time.Duration
	Drain     time.Duration // fanout: the wait for the last deliveries (FanoutResult.Late, Lost)
	Rate      float64
	Window    int
	Machines  int
	Topic     string
	Subscribe bool // idle, connect: each connection subscribes to Topic
	Size      int
	ServerPID int // the first of ServerPIDs, 0 when none
	Sources   []netip.Addr
	Procs     int
	JSON      bool
	Dialers   int
	ReadPause time.Duration // pause of the load client's read loops (ws.Config.ReadPause)
	// ServerPIDs (--server-pid, comma-separated) are every node's process:
	// CPU and memory from /proc are summed over them.
	ServerPIDs []int
	// Redis (--redis) are the loopback host:port of the Redis shards the
	// nodes share: their INFO commandstats give commands per publication.
	Redis []string
	// Publishers and PublishVia: fanout and mixed publish from Publishers
	// keep-alive HTTP connections (rest) or one WebSocket connection (ws).
	Publishers int
	PublishVia string
	Pingers    int // mixed: connections running sys.ping, one outstanding each
	Callers    int // mixed: connections running relayed rpc.call, one outstanding each
	Child      int // index of this child process, -1 when not a child

	// appstreams: devices, apps per device, audio frames per second per
	// device (Rate is transcript events per second per device).
	Devices   int
	Apps      int
	AudioRate float64

	// Minter mints the connections' tokens with --data; the caller sets it
	// before Run.
	Minter Minter

	args       []string // the command-line flags, passed on to the children of --procs
	u          *url.URL // URL with the host checked to be loopback (the first node's)
	target     string   // loopback IP:port to dial (the first node's)
	metricsURL string   // the first node's /metrics
	nodes      []node   // every --url, the first one first
}

// node is one server of --url (several comma-separated URLs: the nodes of a
// cluster).
type node struct {
	u      *url.URL // the ws:// URL, host replaced by target
	target string   // loopback IP:port
}

// lateAfter: a fan-out delivery received more than this after the last
// acknowledgement is late (FanoutResult.Late); the measured phase ends when
// every delivery arrived, at the latest at this point. Deliveries are
// awaited on until --drain has passed (Config.Drain).
const lateAfter = 10 * time.Second

// Limits that keep every run bounded.
const (
	maxConns       = 1_000_000
	maxDuration    = time.Hour
	maxDrain       = 10 * time.Minute
	maxRate        = 1_000_000
	maxProcs       = 64
	connsPerProc   = 19_000 // 20,000 open files per process, minus some
	connsPerSource = 28_000 // ephemeral ports per (source, target) pair
)

// ParseFlags parses and checks the flags of 'junction bench' (args without
// the command name); usage and flag errors go to stderr. It refuses any URL
// or source address that is not a loopback address.
func ParseFlags(args []string, stderr io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: junction bench --scenario SCENARIO [flags]

Load generator speaking Junction's protocol to a server on this machine
(loopback addresses only). Scenarios:
  connect  authenticated connects per second: dial, upgrade, welcome, close,
           with --conns concurrent connectors (--subscribe: each connect
           subscribes to --topic before closing)
  idle     open --conns connections and hold them for --duration; with
           --server-pid, the server's memory per connection
  rpc      sys.ping round trips over --conns connections, --window requests
           outstanding on each
  fanout   --conns subscribers of --topic and one publisher at --rate msg/s
           (0: as fast as a window of --window publications allows)
  relay    RPC calls relayed by the gateway (rpc.call): --machines machines
           register bench.echo and echo every call; --conns callers keep
           --window calls outstanding each (needs --data)
  mixed    fanout (--conns subscribers, --rate) while --pingers connections
           run sys.ping and --callers connections run relayed rpc.call to
           --machines machines, one request outstanding each; reports the
           ping and call latencies beside the fan-out (needs --data)
  appstreams  device streams fanned out to app sessions through the whole
           apps flow: --apps apps (webhooks to a receiver the bench runs on
           loopback) started on --devices devices, each session subscribed
           to its device's transcript and audio streams; the devices publish
           transcript events at --rate, then audio frames of --size bytes at
           --audio-rate, each per device (needs --data; admin REST)
Several comma-separated --url are the nodes of a cluster: what the scenario
measures crosses nodes (see --url); --redis adds Redis commands per
publication or call.
The result is one JSON line on stdout (--json prints only it); a progress
line is redrawn on stderr when it is a terminal.

Flags:
`)
		fs.PrintDefaults()
	}
	c := &Config{args: args}
	var sources, pids, redis string
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:7700/ws", "WebSocket URL of the server (loopback only); several comma-separated URLs are the nodes of a cluster:\n"+
		"subscribers, pingers and idle connections spread over them round-robin, publishers and callers use the first, relay machines the others")
	fs.StringVar(&c.Scenario, "scenario", "", "connect, idle, rpc, fanout, relay or mixed (required)")
	fs.IntVar(&c.Conns, "conns", 100, "connections (connect: concurrent connectors; fanout: subscribers; relay: callers)")
	fs.IntVar(&c.Machines, "machines", 1, "relay: machine connections answering the calls (per process under --procs)")
	fs.StringVar(&c.Token, "token", "", "access token used by every connection")
	fs.StringVar(&c.Data, "data", "", "data directory whose key mints a token per connection (distinct user and device)")
	fs.StringVar(&c.Alg, "alg", "HS256", "token algorithm with --data: HS256 or EdDSA")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured phase")
	fs.DurationVar(&c.Drain, "drain", 60*time.Second, "fanout, mixed: how long to wait, after the last acknowledgement, for deliveries still on their way;\n"+
		"those later than 10 s count as late (not in deliveries/s), those never received by then as lost")
	fs.Float64Var(&c.Rate, "rate", 0, "fanout: publications per second, 0 = as fast as the window allows")
	fs.IntVar(&c.Window, "window", 0, "outstanding requests per connection (default: rpc 1, fanout 64 publications)")
	fs.StringVar(&c.Topic, "topic", "public:bench", "fanout topic (and idle's with --subscribe)")
	fs.BoolVar(&c.Subscribe, "subscribe", false, "idle: every connection subscribes to --topic, to measure idle subscribed connections;\n"+
		"connect: every connect subscribes to --topic and waits for the answer before closing")
	fs.IntVar(&c.Size, "size", 64, "fanout: bytes of publication data")
	fs.StringVar(&pids, "server-pid", "", "server process id, for memory and CPU from /proc (comma-separated: every node's, summed)")
	fs.StringVar(&redis, "redis", "", "comma-separated loopback host:port of the Redis shards the nodes share: Redis commands per publication or call from INFO commandstats")
	fs.StringVar(&sources, "sources", "", "comma-separated loopback source addresses (127.0.0.x) to spread connections over")
	fs.IntVar(&c.Procs, "procs", 1, "processes sharing the connections (re-executes this binary)")
	fs.BoolVar(&c.JSON, "json", false, "print only the JSON result line")
	fs.IntVar(&c.Dialers, "dialers", 64, "concurrent dials while opening connections")
	fs.DurationVar(&c.ReadPause, "read-pause", 0, "pause of the client's read loops after a wait that found few sockets ready, so that many are read per wake-up;\n"+
		"adds up to this much to measured latencies and flatters the server's batching (default 0: read as fast as possible, as a browser does)")
	fs.IntVar(&c.Publishers, "publishers", 1, "fanout, mixed: publishers (rest: one keep-alive HTTP connection each; ws: 1)")
	fs.StringVar(&c.PublishVia, "publish-via", "ws", "fanout, mixed: ws (channel.publish over a WebSocket) or rest (POST /api/v1/channels/{topic}/publish)")
	fs.IntVar(&c.Pingers, "pingers", 10, "mixed: connections running sys.ping")
	fs.IntVar(&c.Callers, "callers", 10, "mixed: connections running relayed rpc.call")
	fs.IntVar(&c.Child, "child", -1, "internal: index of a child process of --procs")
	fs.IntVar(&c.Devices, "devices", 200, "appstreams: devices (one user each)")
	fs.IntVar(&c.Apps, "apps", 50, "appstreams: apps started on every device")
	fs.Float64Var(&c.AudioRate, "audio-rate", 50, "appstreams: audio frames per second per device")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	switch c.Scenario {
	case "connect", "idle", "rpc", "fanout", "relay", "mixed", "appstreams":
	case "":
		return nil, errors.New("bench: --scenario is required (connect, idle, rpc, fanout, relay, mixed or appstreams)")
	default:
		return nil, fmt.Errorf("bench: unknown scenario %q (want connect, idle, rpc, fanout, relay, mixed or appstreams)", c.Scenario)
	}
	var addr netip.Addr
	for raw := range strings.SplitSeq(c.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("bench: --url: %w", err)
		}
		if u.Scheme != "ws" {
			return nil, fmt.Errorf("bench: --url %q: want a ws:// URL", raw)
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "80"
		}
		a, err := loopbackAddr("target", host)
		if err != nil {
			return nil, err
		}
		if len(c.nodes) == 0 {
			addr = a
		} else if a.Is4() != addr.Is4() {
			return nil, fmt.Errorf("bench: --url: targets %s and %s are not of the same IP family", addr, a)
		}
		target := net.JoinHostPort(a.String(), port)
		c.nodes = append(c.nodes, node{u: &url.URL{Scheme: "ws", Host: target, Path: u.Path, RawQuery: u.RawQuery}, target: target})
	}
	if len(c.nodes) > 64 {
		return nil, fmt.Errorf("bench: --url: %d URLs, want at most 64", len(c.nodes))
	}
	c.u, c.target = c.nodes[0].u, c.nodes[0].target
	c.metricsURL = "http://" + c.target + "/metrics"
	if pids != "" {
		for s := range strings.SplitSeq(pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || pid < 0 {
				return nil, fmt.Errorf("bench: --server-pid %q: want process ids", pids)
			}
			if pid > 0 {
				c.ServerPIDs = append(c.ServerPIDs, pid)
			}
		}
		if len(c.ServerPIDs) > 0 {
			c.ServerPID = c.ServerPIDs[0]
		}
	}
	if redis != "" {
		for s := range strings.SplitSeq(redis, ",") {
			host, port, err := net.SplitHostPort(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("bench: --redis %q: want host:port: %w", s, err)
			}
			a, err := loopbackAddr("redis", host)
			if err != nil {
				return nil, err
			}
			c.Redis = append(c.Redis, net.JoinHostPort(a.String(), port))
		}
	}
	if sources != "" {
		for s := range strings.SplitSeq(sources, ",") {
			a, err := loopbackAddr("source", strings.TrimSpace(s))
			if err != nil {
				return nil, err
			}
			if a.Is4() != addr.Is4() {
				return nil, fmt.Errorf("bench: source %s and target %s are not of the same IP family", a, addr)
			}
			c.Sources = append(c.Sources, a)
		}
	}
	if (c.Token == "") == (c.Data == "") {
		return nil, errors.New("bench: pass exactly one of --token and --data")
	}
	if (c.Scenario == "relay" || c.Scenario == "mixed") && c.Data == "" {
		return nil, fmt.Errorf("bench: %s needs --data: it mints a machine and a caller identity of one user", c.Scenario)
	}
	if c.Scenario == "appstreams" {
		if err := c.checkAppStreams(); err != nil {
			return nil, err
		}
	}
	if c.Scenario == "mixed" && c.Procs != 1 {
		return nil, errors.New("bench: mixed runs in one process: --procs must be 1")
	}
	switch c.PublishVia {
	case "ws":
		if c.Publishers != 1 {
			return nil, fmt.Errorf("bench: --publishers %d: --publish-via ws has one publisher", c.Publishers)
		}
	case "rest":
		if c.Publishers < 1 || c.Publishers > 256 {
			return nil, fmt.Errorf("bench: --publishers %d: want 1 to 256", c.Publishers)
		}
	default:
		return nil, fmt.Errorf("bench: --publish-via %q: want ws or rest", c.PublishVia)
	}
	if c.Pingers < 0 || c.Pingers > 10_000 || c.Callers < 0 || c.Callers > 10_000 {
		return nil, fmt.Errorf("bench: --pingers %d, --callers %d: want 0 to 10000", c.Pingers, c.Callers)
	}
	switch {
	case c.Conns < 1 || c.Conns > maxConns:
		return nil, fmt.Errorf("bench: --conns %d: want 1 to %d", c.Conns, maxConns)
	case c.Duration < 100*time.Millisecond || c.Duration > maxDuration:
		return nil, fmt.Errorf("bench: --duration %s: want 100ms to %s", c.Duration, maxDuration)
	case c.Drain < lateAfter || c.Drain > maxDrain:
		return nil, fmt.Errorf("bench: --drain %s: want %s to %s", c.Drain, lateAfter, maxDrain)
	case c.Rate < 0 || c.Rate > maxRate:
		return nil, fmt.Errorf("bench: --rate %g: want 0 to %d", c.Rate, maxRate)
	case c.Window < 0 || c.Window > 1<<16:
		return nil, fmt.Errorf("bench: --window %d: want 1 to %d", c.Window, 1<<16)
	case c.Size < 16 || c.Size > 60_000:
		return nil, fmt.Errorf("bench: --size %d: want 16 to 60000", c.Size)
	case c.Procs < 1 || c.Procs > maxProcs:
		return nil, fmt.Errorf("bench: --procs %d: want 1 to %d", c.Procs, maxProcs)
	case c.Dialers < 1 || c.Dialers > 4096:
		return nil, fmt.Errorf("bench: --dialers %d: want 1 to 4096", c.Dialers)
	case c.Machines < 1 || c.Machines > 1024:
		return nil, fmt.Errorf("bench: --machines %d: want 1 to 1024", c.Machines)
	case c.ReadPause < 0 || c.ReadPause > 100*time.Millisecond:
		return nil, fmt.Errorf("bench: --read-pause %s: want 0 to 100ms", c.ReadPause)
	}
	if c.Window == 0 {
		c.Window = 1
		if c.Scenario == "fanout" || c.Scenario == "mixed" {
			c.Window = 64
		}
	}
	if c.Scenario != "connect" {
		if per := (c.Conns + c.Procs - 1) / c.Procs; per > connsPerProc {
			return nil, fmt.Errorf("bench: %d connections in one process exceed its open-file limit: use --procs %d or more",
				per, (c.Conns+connsPerProc-1)/connsPerProc)
		}
		if per := c.Conns / max(1, len(c.Sources)); per > connsPerSource {
			return nil, fmt.Errorf("bench: %d connections per source address exhaust its ephemeral ports: pass --sources with %d or more addresses (127.0.0.1,127.0.0.2,...)",
				per, (c.Conns+connsPerSource-1)/connsPerSource)
		}
	}
	return c, nil
}

// Result is the JSON line 'junction bench' prints (see BENCHMARKS.md).
type Result struct {
	Scenario    string         `json:"scenario"`
	URL         string         `json:"url"`
	Conns       int            `json:"conns"`
	Procs       int            `json:"procs"`
	Sources     int            `json:"sources"`
	DurationS   float64        `json:"duration_s"`
	Opened      int64          `json:"opened"`
	DialErrors  int64          `json:"dial_errors"`
	ClosedEarly int64          `json:"closed_early"`
	Errors      int64          `json:"errors"`
	FirstError  string         `json:"first_error,omitempty"`
	Connect     *ConnectResult `json:"connect,omitempty"`
	RPC         *RPCResult     `json:"rpc,omitempty"`
	Relay       *RelayResult   `json:"relay,omitempty"`
	Fanout      *FanoutResult  `json:"fanout,omitempty"`
	Mixed       *MixedResult   `json:"mixed,omitempty"`
	Latency     *LatencyStats  `json:"latency,omitempty"`
	Server      *ServerStats   `json:"server,omitempty"`
	Redis       *RedisStats    `json:"redis,omitempty"`
	Nodes       int            `json:"nodes,omitempty"` // --url's servers, when more than one
	Hist        []uint64       `json:"hist,omitempty"`  // child processes only: latency buckets

	// AppStreams is the appstreams scenario's result.
	AppStreams *AppStreamsResult `json:"appstreams,omitempty"`
}

// ConnectResult is the connect section of the result line.
type ConnectResult struct {
	Connects int64   `json:"connects"`
	PerSec   float64 `json:"per_sec"`
	// Subscribe: each connect subscribed to the topic before closing
	// (--subscribe); its latency is then dial → subscription answered.
	Subscribe bool `json:"subscribe,omitempty"`
}

// RPCResult is the rpc section of the result line.
type RPCResult struct {
	Window int     `json:"window"`
	Pings  int64   `json:"pings"`
	PerSec float64 `json:"per_sec"`
}

// FanoutResult is the fanout section of the result line.
type FanoutResult struct {
	Subscribers        int64   `json:"subscribers"`
	Rate               float64 `json:"rate"`
	Window             int     `json:"window"`
	SizeBytes          int     `json:"size_bytes"`
	Publications       int64   `json:"publications"`
	PublicationsPerSec float64 `json:"publications_per_sec"`
	Deliveries         int64   `json:"deliveries"`
	DeliveriesPerSec   float64 `json:"deliveries_per_sec"`
	// SteadyDeliveriesPerSec is the rate between 10 % and 90 % of the
	// measured phase: DeliveriesPerSec counts the phase's start, before
	// the first delivery, and its end, the wait for the last one; at a
	// fixed publication rate that the server keeps up with, this one is
	// the offered rate.
	SteadyDeliveriesPerSec float64 `json:"steady_deliveries_per_sec"`
	Expected               int64   `json:"expected"`
	// Lost are the expected deliveries never received, by the end of the
	// drain (--drain); Late those received, but more than lateAfter after
	// the last acknowledgement (counted in Deliveries and the latency, not
	// in DeliveriesPerSec).
	Lost int64 `json:"lost"`
	Late int64 `json:"late"`
	// ArrivingAfterDrain, measured only when some are lost, counts the
	// deliveries received in the second after the drain ended (not in
	// Deliveries): more than zero says the "lost" were still on their way,
	// later than --drain, rather than gone.
	ArrivingAfterDrain int64 `json:"arriving_after_drain,omitempty"`
	// Unsubscribed counts the subscriptions the server dropped
	// (channel.unsubscribed: a gap it could not fill). When it advised
	// resubscribing the load generator resubscribed from its last offset;
	// what the server recovered then counts as received, and Unrecovered
	// counts the resubscriptions it could not resume (their gap is lost).
	Unsubscribed   int64  `json:"unsubscribed"`
	Unrecovered    int64  `json:"unrecovered"`
	Gaps           int64  `json:"gaps"`
	Duplicates     int64  `json:"duplicates"`
	FinalOffset    uint64 `json:"final_offset"`
	SumStartOffset uint64 `json:"sum_start_offset"`
	// PublishAck is the publisher's round trip: a publication sent → its
	// acknowledgement (the offset) received. The server answers a
	// connection's requests one at a time, so a round trip longer than the
	// publication interval queues the publications behind it, and that
	// wait is part of every delivery's latency.
	PublishAck *LatencyStats `json:"publish_ack,omitempty"`
	// ClientCPUUsPerDelivery is the load generator's own CPU time (user and
	// system, all its processes) over the measured phase, per delivery: the
	// share of the machine the server did not get.
	ClientCPUUsPerDelivery float64 `json:"client_cpu_us_per_delivery,omitempty"`
	clientCPUSeconds       float64 // summed over the children before the division
}

// inPhase is the deliveries received within the measured phase.
func (f *FanoutResult) inPhase() int64 { return f.Deliveries - f.Late }

// MixedResult is the mixed section of the result line: the requests that ran
// beside the fan-out (whose figures are in the fanout section, its delivery
// latency in latency) and their round-trip times.
type MixedResult struct {
	Pingers     int64         `json:"pingers"`
	Pings       int64         `json:"pings"`
	PingsPerSec float64       `json:"pings_per_sec"`
	PingLatency *LatencyStats `json:"ping_latency,omitempty"`
	Machines    int           `json:"machines"`
	Callers     int64         `json:"callers"`
	Calls       int64         `json:"calls"`
	CallsPerSec float64       `json:"calls_per_sec"`
	CallLatency *LatencyStats `json:"call_latency,omitempty"`
}

// Run runs the scenario of cfg and writes its result to stdout: a few
// human-readable lines unless --json, then the JSON line. Progress goes to
// stderr when it is a terminal.
func Run(ctx context.Context, cfg *Config, stdout, stderr io.Writer) error {
	// Hard bound: setup, the measured phase, draining and teardown.
	limit := cfg.Duration + cfg.Drain + 90*time.Second + time.Duration(cfg.Conns/cfg.Procs)*2*time.Millisecond
	if cfg.Scenario == "appstreams" { // setup of every session, two measured phases and their drains
		limit = 2*cfg.Duration + 5*time.Minute + time.Duration(cfg.Devices*cfg.Apps)*10*time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	var res *Result
	var err error
	if cfg.Scenario == "appstreams" {
		probe := &serverProbe{pids: cfg.ServerPIDs, metricsURL: cfg.metricsURL, redis: cfg.Redis}
		probe.start(ctx)
		if res, err = runAppStreams(ctx, cfg, probe, stderr); err == nil {
			res.Server = probe.stats(res)
		}
	} else if cfg.Procs > 1 {
		res, err = runProcs(ctx, cfg, stderr)
	} else {
		res, err = runLocal(ctx, cfg, stderr)
	}
	if err != nil {
		return err
	}
	if cfg.Child < 0 {
		res.Hist = nil
		if !cfg.JSON {
			printSummary(stdout, res)
		}
	}
	line, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("bench: encode result: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}

// phaseHooks separate a scenario's phases so that the server is measured
// exactly over the measured phase, in one process or across several.
type phaseHooks struct {
	// ready is called once setup is done (connections open, subscribed); it
	// returns when the measured phase starts.
	ready func() error
	// done is called after the measured phase and its drain, while the
	// connections are still open.
	done func()
}

// runLocal runs the scenario in this process; as a child of --procs it
// reports its phases on stdout and waits for the parent's go-ahead on stdin.
func runLocal(ctx context.Context, cfg *Config, stderr io.Writer) (*Result, error) {
	probe := &serverProbe{pids: cfg.ServerPIDs, metricsURL: cfg.metricsURL, redis: cfg.Redis}
	var hooks phaseHooks
	if cfg.Child >= 0 {
		in := bufio.NewReader(os.Stdin)
		wait := func(want string) error {
			line, err := in.ReadString('\n')
			if strings.TrimSpace(line) != want {
				return fmt.Errorf("bench: child %d: waiting for %q from the parent: %q %v", cfg.Child, want, line, err)
			}
			return nil
		}
		hooks.ready = func() error {
			fmt.Fprintln(os.Stdout, "ready")
			return wait("go")
		}
		hooks.done = func() {
			fmt.Fprintln(os.Stdout, "done")
			_ = wait("end")
		}
	} else {
		probe.start(ctx)
		hooks.ready = func() error { probe.begin(ctx); return nil }
		hooks.done = func() { probe.end(ctx) }
	}
	m := &meter{}
	if cfg.Child < 0 && isTerminal(stderr) {
		pctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { progress(pctx, stderr, cfg.Scenario, m) })
		defer wg.Wait()
		defer stop()
	}
	res, err := runScenario(ctx, cfg, m, hooks)
	if err != nil {
		return nil, err
	}
	if cfg.Child < 0 {
		res.Server = probe.stats(res)
		res.Redis = probe.redisStats(res)
	}
	res.Latency = summarize(res.Hist)
	return res, nil
}

// runProcs re-executes this binary cfg.Procs times, each child with a
// share of the connections (child 0 also holds the fan-out publisher), steps
// them through their phases together and aggregates their results.
func runProcs(ctx context.Context, cfg *Config, stderr io.Writer) (*Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find executable: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type child struct {
		cmd   *exec.Cmd
		in    io.WriteCloser
		lines chan string
	}
	probe := &serverProbe{pids: cfg.ServerPIDs, metricsURL: cfg.metricsURL, redis: cfg.Redis}
	probe.start(ctx)
	children := make([]*child, cfg.Procs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range children {
		share := cfg.Conns / cfg.Procs
		if i < cfg.Conns%cfg.Procs {
			share++
		}
		cargs := append([]string{"bench"}, cfg.args...)
		cargs = append(cargs, "--procs=1", "--conns="+strconv.Itoa(max(share, 1)), "--child="+strconv.Itoa(i), "--server-pid=0", "--redis=", "--json")
		cmd := exec.CommandContext(ctx, exe, cargs...)
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("bench: child %d: %w", i, err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("bench: child %d: %w", i, err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("bench: start child %d: %w", i, err)
		}
		c := &child{cmd: cmd, in: in, lines: make(chan string, 4)}
		children[i] = c
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
			close(c.lines)
			_ = cmd.Wait()
		})
	}
	defer func() {
		cancel()
		for _, c := range children {
			if c != nil {
				c.in.Close()
			}
		}
	}()
	expect := func(want string) ([]string, error) {
		got := make([]string, len(children))
		for i, c := range children {
			select {
			case line, ok := <-c.lines:
				if !ok {
					return nil, fmt.Errorf("bench: child %d exited before %q", i, want)
				}
				if want != "" && line != want {
					return nil, fmt.Errorf("bench: child %d: got %q, want %q", i, line, want)
				}
				got[i] = line
			case <-ctx.Done():
				return nil, fmt.Errorf("bench: waiting for child %d: %w", i, ctx.Err())
			}
		}
		return got, nil
	}
	tell := func(line string) {
		for _, c := range children {
			_, _ = io.WriteString(c.in, line+"\n")
		}
	}
	if _, err := expect("ready"); err != nil {
		return nil, err
	}
	probe.begin(ctx)
	tell("go")
	if _, err := expect("done"); err != nil {
		return nil, err
	}
	probe.end(ctx)
	tell("end")
	lines, err := expect("")
	if err != nil {
		return nil, err
	}
	results := make([]*Result, len(lines))
	for i, line := range lines {
		results[i] = new(Result)
		if err := json.Unmarshal([]byte(line), results[i]); err != nil {
			return nil, fmt.Errorf("bench: child %d result: %w", i, err)
		}
	}
	res := mergeResults(cfg, results)
	res.Server = probe.stats(res)
	res.Redis = probe.redisStats(res)
	res.Latency = summarize(res.Hist)
	return res, nil
}

// mergeResults aggregates the results of child processes: counts and rates
// add up (the children ran concurrently), latency histograms merge, and
// fan-out losses are computed from the publisher's final offset.
func mergeResults(cfg *Config, rs []*Result) *Result {
	out := &Result{Scenario: cfg.Scenario, URL: cfg.u.String(), Conns: cfg.Conns, Procs: len(rs), Sources: len(cfg.Sources), Nodes: cfg.nodeCount()}
	for _, r := range rs {
		out.DurationS = max(out.DurationS, r.DurationS)
		out.Opened += r.Opened
		out.DialErrors += r.DialErrors
		out.ClosedEarly += r.ClosedEarly
		out.Errors += r.Errors
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
		out.Hist = mergeCounts(out.Hist, r.Hist)
		if r.Connect != nil {
			if out.Connect == nil {
				out.Connect = &ConnectResult{}
			}
			out.Connect.Connects += r.Connect.Connects
			out.Connect.PerSec += r.Connect.PerSec
			out.Connect.Subscribe = r.Connect.Subscribe
		}
		if r.RPC != nil {
			if out.RPC == nil {
				out.RPC = &RPCResult{Window: r.RPC.Window}
			}
			out.RPC.Pings += r.RPC.Pings
			out.RPC.PerSec += r.RPC.PerSec
		}
		if rr := r.Relay; rr != nil {
			o := out.Relay
			if o == nil {
				o = &RelayResult{Machines: rr.Machines, Window: rr.Window}
				out.Relay = o
			}
			o.Callers += rr.Callers
			o.Calls += rr.Calls
			o.PerSec += rr.PerSec
			o.clientCPUSeconds += rr.ClientCPUUsPerCall * float64(rr.Calls) / 1e6
		}
		if f := r.Fanout; f != nil {
			o := out.Fanout
			if o == nil {
				o = &FanoutResult{Rate: f.Rate, Window: f.Window, SizeBytes: f.SizeBytes}
				out.Fanout = o
			}
			o.Subscribers += f.Subscribers
			o.Publications += f.Publications
			o.PublicationsPerSec += f.PublicationsPerSec
			o.Deliveries += f.Deliveries
			o.Late += f.Late
			o.ArrivingAfterDrain += f.ArrivingAfterDrain
			o.Unsubscribed += f.Unsubscribed
			o.Unrecovered += f.Unrecovered
			o.DeliveriesPerSec += f.DeliveriesPerSec
			o.SteadyDeliveriesPerSec += f.SteadyDeliveriesPerSec
			o.Gaps += f.Gaps
			o.Duplicates += f.Duplicates
			o.FinalOffset = max(o.FinalOffset, f.FinalOffset)
			o.SumStartOffset += f.SumStartOffset
			if f.PublishAck != nil { // only the parent process publishes
				o.PublishAck = f.PublishAck
			}
			o.clientCPUSeconds += f.ClientCPUUsPerDelivery * float64(f.Deliveries-f.Late) / 1e6
		}
	}
	if o := out.Relay; o != nil && o.Calls > 0 {
		o.Machines *= len(rs)
		o.ClientCPUUsPerCall = o.clientCPUSeconds * 1e6 / float64(o.Calls)
	}
	if o := out.Fanout; o != nil {
		o.Expected = o.Subscribers*int64(o.FinalOffset) - int64(o.SumStartOffset)
		o.Lost = max(0, o.Expected-o.Deliveries)
		if o.Deliveries > o.Late {
			o.ClientCPUUsPerDelivery = o.clientCPUSeconds * 1e6 / float64(o.Deliveries-o.Late)
		}
	}
	return out
}

// printSummary writes a few human-readable lines before the JSON line.
func printSummary(w io.Writer, r *Result) {
	fmt.Fprintf(w, "%s: %d connections opened (%d dial errors, %d closed early), %d errors, %.1fs measured\n",
		r.Scenario, r.Opened, r.DialErrors, r.ClosedEarly, r.Errors, r.DurationS)
	if r.Nodes > 1 {
		fmt.Fprintf(w, "  %d nodes\n", r.Nodes)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
	switch {
	case r.Connect != nil:
		sub := ""
		if r.Connect.Subscribe {
			sub = ", each subscribed to one channel"
		}
		fmt.Fprintf(w, "  %d connects, %.0f connects/s%s\n", r.Connect.Connects, r.Connect.PerSec, sub)
	case r.RPC != nil:
		fmt.Fprintf(w, "  %d sys.ping round trips, %.0f/s (window %d per connection)\n", r.RPC.Pings, r.RPC.PerSec, r.RPC.Window)
	case r.Relay != nil:
		rr := r.Relay
		fmt.Fprintf(w, "  %d relayed calls, %.0f/s (%d callers, window %d, %d machines)", rr.Calls, rr.PerSec, rr.Callers, rr.Window, rr.Machines)
		if rr.ClientCPUUsPerCall != 0 {
			fmt.Fprintf(w, "; load client CPU %.2f µs per call", rr.ClientCPUUsPerCall)
		}
		fmt.Fprintln(w)
	case r.AppStreams != nil:
		printAppStreams(w, r.AppStreams)
	case r.Fanout != nil:
		f := r.Fanout
		if mx := r.Mixed; mx != nil {
			for _, l := range []struct {
				what    string
				n       int64
				perSec  float64
				latency *LatencyStats
			}{{"sys.ping", mx.Pings, mx.PingsPerSec, mx.PingLatency}, {"relayed rpc.call", mx.Calls, mx.CallsPerSec, mx.CallLatency}} {
				fmt.Fprintf(w, "  %d %s (%.0f/s) beside the fan-out", l.n, l.what, l.perSec)
				if l.latency != nil {
					fmt.Fprintf(w, ": p50 %.3f ms, p99 %.3f ms, max %.3f ms", l.latency.P50Ms, l.latency.P99Ms, l.latency.MaxMs)
				}
				fmt.Fprintln(w)
			}
		}
		fmt.Fprintf(w, "  %d publications (%.0f/s) to %d subscribers: %d deliveries, %s deliveries/s (steady %s/s), %d late, %d lost, %d duplicates\n",
			f.Publications, f.PublicationsPerSec, f.Subscribers, f.Deliveries, human(f.DeliveriesPerSec), human(f.SteadyDeliveriesPerSec), f.Late, f.Lost, f.Duplicates)
		if f.Unsubscribed > 0 {
			fmt.Fprintf(w, "  %d subscriptions dropped by the server, %d of them not recovered on resubscribing\n", f.Unsubscribed, f.Unrecovered)
		}
		if a := f.PublishAck; a != nil {
			fmt.Fprintf(w, "  publish → acknowledgement: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", a.P50Ms, a.P99Ms, a.MaxMs)
		}
		if f.ClientCPUUsPerDelivery != 0 {
			fmt.Fprintf(w, "  load client CPU: %.3f µs/delivery\n", f.ClientCPUUsPerDelivery)
		}
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "  latency: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms (%d samples)\n", l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.Count)
	}
	if rs := r.Redis; rs != nil {
		fmt.Fprintf(w, "  redis (%d shards): %d commands (%d scripts), CPU %.2f s", rs.Shards, rs.Commands, rs.Scripts, rs.CPUSeconds)
		switch {
		case rs.CommandsPerPublication != 0:
			fmt.Fprintf(w, ", %.2f commands per publication", rs.CommandsPerPublication)
		case rs.CommandsPerCall != 0:
			fmt.Fprintf(w, ", %.2f commands per call", rs.CommandsPerCall)
		}
		if rs.Error != "" {
			fmt.Fprintf(w, "; error: %s", rs.Error)
		}
		fmt.Fprintln(w)
	}
	if s := r.Server; s != nil {
		if s.RSSPerConnBytes != 0 {
			fmt.Fprintf(w, "  server memory: RSS %d -> %d bytes, %.0f bytes/conn", s.RSSBeforeBytes, s.RSSAfterBytes, s.RSSPerConnBytes)
			if s.HeapPerConnBytes != 0 {
				fmt.Fprintf(w, "; heap+stack %.0f bytes/conn", s.HeapPerConnBytes)
			}
			fmt.Fprintln(w)
		}
		if s.CPUSeconds != 0 {
			fmt.Fprintf(w, "  server CPU: %.2f s", s.CPUSeconds)
			if s.CPUUsPerDelivery != 0 {
				fmt.Fprintf(w, ", %.3f µs/delivery (%.4f s per 1,000)", s.CPUUsPerDelivery, s.CPUSPer1kDeliveries)
			}
			if s.CPUUsPerOp != 0 {
				fmt.Fprintf(w, ", %.2f µs per %s", s.CPUUsPerOp, strings.TrimSuffix(opsName(r.Scenario), "s"))
			}
			fmt.Fprintln(w)
		}
	}
}
