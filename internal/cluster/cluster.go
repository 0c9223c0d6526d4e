// Package cluster implements the hub's broker interfaces (hub.Streams,
// hub.Presence, hub.Directory, hub.IdemRecords) on Redis, so that several
// junction nodes share channels, history, presence, the device directory
// and idempotency records. docs/cluster.md describes what it stores, the
// key layout, the expiries and what each Redis persistence choice loses.
//
// # Shards
//
// Config.URLs name one or more independent Redis servers (shards). A topic
// lives on one shard, chosen by a stable hash of its name (FNV-1a, modulo
// the number of URLs): every node must list the same URLs in the same
// order. Every key of a topic carries the topic as a hash tag ({topic}), so
// that a topic's keys would also share one slot of a Redis Cluster.
//
// # Streams without gaps
//
// Publish is one Lua script (scriptPublish): it creates the topic's epoch
// (128 random bits) when the topic's meta is missing, increments its
// offset, appends the publication to the topic's Redis stream with entry id
// = offset (trimmed to the history size), refreshes expiries, and PUBLISHes
// "epoch|offset|..." on the topic's channel, atomically. Offsets are
// contiguous per epoch; when Redis lost a topic (restart without
// persistence, eviction, an offset gone backwards) its next use starts a
// new epoch, so an old position is recognisably stale (hub.ErrHistoryGap,
// recovered: false for clients).
//
// A node subscribes to a topic's channel first, and only once Redis has
// confirmed the subscription reads the topic's position: every publication
// after that arrives on the subscription. Each shard has a few pub/sub
// connections (Config.PubSubConns), a topic on one of them by hash. Per
// subscribed topic the node remembers the last offset it delivered; a
// publication that does not follow it is preceded by the missing ones read
// back from the stream (a fill). Missed publications are found three ways:
// the next publication of the topic is not contiguous; go-redis reconnects
// a pub/sub connection silently and resubscribes, and each resubscription's
// confirmation triggers a position check of its topic; a periodic position
// check (Config.CheckInterval) compares every subscribed topic with Redis.
// Each connection's queue between its reader and its dispatcher is bounded
// (Config.QueueSize): a publication that does not fit is dropped, counted,
// and its topic checked at once, so overflow is a detected gap, filled like
// any other.
//
// When a gap cannot be filled (the stream no longer holds the missing
// offsets), the node delivers a reset marker before the next publication:
// a hub.Publication with an empty Epoch and no Data. No real epoch is
// empty, so the hub treats every subscriber of the topic as being in
// another epoch and resets it (channel.unsubscribed, resubscribe): its
// client resumes from history or gets recovered: false with a fresh
// snapshot, never a silent gap.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

var (
	_ hub.Streams     = (*Broker)(nil)
	_ hub.Presence    = (*Broker)(nil)
	_ hub.Directory   = (*Broker)(nil)
	_ hub.IdemRecords = (*Broker)(nil)
)

// Config configures a Broker. The zero value of each optional field is its
// documented default.
type Config struct {
	// URLs are the Redis shards, redis://[user:password@]host:port[/db]
	// (or rediss:// for TLS). Required. Every node lists the same URLs in
	// the same order.
	URLs []string
	// NodeID names this node in the directory (hub.Config.NodeID).
	// Required.
	NodeID string
	// BootID names this run of the node (a random id when empty): records
	// this node writes carry it, so that a restarted node's records are
	// told from its previous life's.
	BootID string
	// Prefix starts every key and channel name. Default "junction:".
	Prefix string
	// PubSubConns is the number of pub/sub connections per shard. Default 4.
	PubSubConns int
	// QueueSize bounds each pub/sub connection's queue of received
	// messages not yet delivered. Default 8192.
	QueueSize int
	// PubSubPing is how long a pub/sub connection may stay silent before
	// it is pinged; silent for as long again, it is replaced. Default 15s.
	PubSubPing time.Duration
	// CheckInterval is the period of the position check of subscribed
	// topics. Default 5s.
	CheckInterval time.Duration
	// NodeLeaseTTL is the ttl of this node's lease (its boot id, refreshed
	// every third of it): the others treat the node as dead, its device
	// claims as stale and calls forwarded to it as failed, within this ttl
	// of its death. Default 6s.
	NodeLeaseTTL time.Duration
	// StreamTTL is how long a topic's position (epoch and offset) outlives
	// its last publication (or longer, its history ttl). Default 24h.
	StreamTTL time.Duration
	// RouteCacheTTL is how long this node trusts a device claim or a node
	// lease it read for routing a call (DeviceRoute) before reading it
	// again; a stale route is detected and looked up again (route.go).
	// Default 1s; negative: no cache.
	RouteCacheTTL time.Duration
	// RouteCacheSize bounds the devices (and, separately, the nodes) the
	// route cache holds. Default 100000.
	RouteCacheSize int
	// PoolSize is the number of connections per shard for commands (not
	// pub/sub), unless the URL names pool_size. Default 128.
	PoolSize int
	// Logger receives the broker's warnings. Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultPrefix        = "junction:"
	defaultPubSubConns   = 4
	defaultQueueSize     = 8192
	defaultCheckInterval = 5 * time.Second
	defaultPubSubPing    = 15 * time.Second
	defaultStreamTTL     = 24 * time.Hour
	defaultNodeLeaseTTL  = 6 * time.Second
)

// Broker is the Redis broker. It serves Streams, Presence, Directory and
// IdemRecords; Start runs it, Close stops it.
type Broker struct {
	cfg    Config       // set once in New, defaults filled
	log    *slog.Logger // set once in New
	now    func() time.Time
	shards []*shard // set once in New

	pubs  atomic.Pointer[pubHandlerBox]  // set once by Deliver
	nodes atomic.Pointer[nodeHandlerBox] // set once by Receive
	// rx is the state of this node's channel subscription (Receiving).
	rx nodeRx

	started atomic.Bool
	closed  atomic.Bool
	stop    chan struct{} // closed by Close
	wg      sync.WaitGroup

	stats stats

	routes *routeCache // set once in New (route.go)
}

type pubHandlerBox struct{ h hub.PublicationHandler }

type nodeHandlerBox struct{ h hub.NodeHandler }

// shard is one Redis server.
type shard struct {
	idx    int           // set once
	url    string        // set once, for messages (password removed)
	client *redis.Client // set once
	conns  []*psConn     // set once in New; running after Start
	sender *nodeSender   // set once in New; its writer runs after Start (nodesend.go)
}

// stats counts what the broker did (Stats).
type stats struct {
	published     atomic.Uint64
	delivered     atomic.Uint64
	filled        atomic.Uint64 // publications delivered by a fill
	resets        atomic.Uint64 // reset markers delivered, new epochs seen
	dropped       atomic.Uint64 // messages dropped by a full queue
	resubscribed  atomic.Uint64 // subscription confirmations of already positioned topics
	checks        atomic.Uint64 // position checks run
	receiveErrors atomic.Uint64 // errors of pub/sub reads (each one a reconnect)
	idemReplayed  atomic.Uint64 // idempotent publications answered from their record
	nodeSent      atomic.Uint64 // node messages PUBLISHed (SendToNode)
	nodeBatches   atomic.Uint64 // pipelines that carried them
	// publishBatches counts PublishBatch calls of several publications
	// (each one pipeline per shard).
	publishBatches atomic.Uint64
}

// Stats is a snapshot of the broker's counters.
type Stats struct {
	Published     uint64 // publications made by this node
	Delivered     uint64 // publications delivered to this node's handler
	Filled        uint64 // of which read back from a stream to fill a gap
	Resets        uint64 // subscribers reset: gaps that could not be filled, new epochs
	Dropped       uint64 // received messages dropped by a full queue (each then filled)
	Resubscribed  uint64 // topics resubscribed after a pub/sub reconnect
	Checks        uint64 // topic position checks run
	ReceiveErrors uint64 // pub/sub read errors (each one a reconnect)
	IdemReplayed  uint64 // idempotent publications answered from their record
	NodeSent      uint64 // node messages PUBLISHed (SendToNode)
	NodeBatches   uint64 // pipelines (Redis round trips) that carried them
	// PublishBatches counts batches of several publications published
	// together (PublishBatch: one pipeline per shard).
	PublishBatches uint64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	s := &b.stats
	return Stats{
		Published: s.published.Load(), Delivered: s.delivered.Load(), Filled: s.filled.Load(),
		Resets: s.resets.Load(), Dropped: s.dropped.Load(), Resubscribed: s.resubscribed.Load(),
		Checks: s.checks.Load(), ReceiveErrors: s.receiveErrors.Load(),
		IdemReplayed: s.idemReplayed.Load(),
		NodeSent:     s.nodeSent.Load(), NodeBatches: s.nodeBatches.Load(),
		PublishBatches: s.publishBatches.Load(),
	}
}

// New returns a broker for cfg. It connects nothing: Start does.
func New(cfg Config) (*Broker, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("cluster: no Redis URL")
	}
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: empty node id")
	}
	if cfg.BootID == "" {
		cfg.BootID = randomHex(8)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("cluster: prefix %q must not contain braces (they are hash tags)", cfg.Prefix)
	}
	if cfg.PubSubConns <= 0 {
		cfg.PubSubConns = defaultPubSubConns
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = defaultQueueSize
	}
	if cfg.PubSubPing <= 0 {
		cfg.PubSubPing = defaultPubSubPing
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = defaultCheckInterval
	}
	if cfg.StreamTTL <= 0 {
		cfg.StreamTTL = defaultStreamTTL
	}
	if cfg.NodeLeaseTTL <= 0 {
		cfg.NodeLeaseTTL = defaultNodeLeaseTTL
	}
	if cfg.RouteCacheTTL == 0 {
		cfg.RouteCacheTTL = defaultRouteCacheTTL
	}
	if cfg.RouteCacheSize <= 0 {
		cfg.RouteCacheSize = defaultRouteCacheSize
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = defaultPoolSize
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, now: time.Now, stop: make(chan struct{}),
		routes: newRouteCache(cfg.RouteCacheTTL, cfg.RouteCacheSize)}
	if b.log == nil {
		b.log = slog.Default()
	}
	for i, u := range cfg.URLs {
		opt, err := parseURL(u)
		if err != nil {
			return nil, fmt.Errorf("cluster: shard %d: %w", i, err)
		}
		clientOptions(opt, u, cfg.PoolSize)
		sh := &shard{idx: i, url: opt.Addr, client: redis.NewClient(opt)}
		for j := range cfg.PubSubConns {
			sh.conns = append(sh.conns, newPSConn(b, sh, j))
		}
		sh.sender = newNodeSender(b, sh)
		b.shards = append(b.shards, sh)
	}
	return b, nil
}

// ParseURLs splits a comma-separated list of Redis URLs (the --broker flag)
// and checks each one.
func ParseURLs(s string) ([]string, error) {
	var out []string
	for u := range strings.SplitSeq(s, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if _, err := parseURL(u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("no redis url")
	}
	return out, nil
}

// parseURL parses one Redis URL; its errors never show the password.
func parseURL(u string) (*redis.Options, error) {
	opt, err := redis.ParseURL(u)
	if err != nil {
		// net/url's errors repeat the URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis url %q: %w", redactURL(u), err)
	}
	return opt, nil
}

// redactURL hides a URL's password in messages.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "://***@" + rest[at+1:]
	}
	return u
}

// Broker returns b as a hub.Broker serving every concern.
func (b *Broker) Broker() hub.Broker {
	return hub.Broker{Streams: b, Presence: b, Directory: b, Records: b}
}

// NodeID returns the node this broker serves.
func (b *Broker) NodeID() string { return b.cfg.NodeID }

// BootID returns this run's boot id.
func (b *Broker) BootID() string { return b.cfg.BootID }

// Start checks that every shard answers, then starts the pub/sub
// connections and their position checks, until Close. A second call is an
// error.
func (b *Broker) Start(ctx context.Context) error {
	if b.closed.Load() {
		return hub.ErrBrokerClosed
	}
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("cluster: Start called twice")
	}
	routeRedisLogs(b.log)
	if err := b.Ping(ctx); err != nil {
		return err
	}
	if err := b.refreshNodeLease(ctx); err != nil {
		return err
	}
	b.wg.Add(1)
	go b.runNodeLease()
	for _, sh := range b.shards {
		for _, c := range sh.conns {
			c.start()
		}
		b.wg.Add(1)
		go func() { defer b.wg.Done(); sh.sender.run() }()
	}
	return nil
}

// Ping checks that every shard answers.
func (b *Broker) Ping(ctx context.Context) error {
	for _, sh := range b.shards {
		if err := sh.client.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("cluster: redis shard %d (%s): %w", sh.idx, sh.url, err)
		}
	}
	return nil
}

// Close stops the pub/sub connections and closes the clients; later calls
// fail with hub.ErrBrokerClosed. Safe to call twice.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(b.stop)
	for _, sh := range b.shards {
		for _, c := range sh.conns {
			c.close()
		}
	}
	b.wg.Wait()
	var first error
	for _, sh := range b.shards {
		if err := sh.client.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// hash is the stable hash that places a topic (or a device, a node...).
func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func (b *Broker) shardOf(name string) *shard {
	return b.shards[hash(name)%uint64(len(b.shards))]
}

// connOf returns the pub/sub connection carrying name's channel.
func (b *Broker) connOf(name string) *psConn {
	h := hash(name)
	sh := b.shards[h%uint64(len(b.shards))]
	return sh.conns[(h/uint64(len(b.shards)))%uint64(len(sh.conns))]
}

// Keys. Each carries its topic (device, ...) as a hash tag, so that the
// keys one script touches share a Cluster slot.
func (b *Broker) metaKey(topic string) string   { return b.cfg.Prefix + "{" + topic + "}:meta" }
func (b *Broker) streamKey(topic string) string { return b.cfg.Prefix + "{" + topic + "}:stream" }
func (b *Broker) channel(topic string) string   { return b.cfg.Prefix + "{" + topic + "}:pub" }
func (b *Broker) presKey(topic string) string   { return b.cfg.Prefix + "{" + topic + "}:presence" }
func (b *Broker) presExpKey(topic string) string {
	return b.cfg.Prefix + "{" + topic + "}:presence:exp"
}
func (b *Broker) deviceKey(device string) string { return b.cfg.Prefix + "device:{" + device + "}" }
func (b *Broker) deviceGenKey(device string) string {
	return b.cfg.Prefix + "device:{" + device + "}:gen"
}
func (b *Broker) nodeChannel(node string) string { return b.cfg.Prefix + "node:{" + node + "}" }

// pubIdemKey is an idempotent publication's record: in the topic's slot
// (the publish script touches it), named by a hash of the key (up to 1 KiB).
func (b *Broker) pubIdemKey(topic, key string) string {
	sum := sha256.Sum256([]byte(key))
	return b.cfg.Prefix + "{" + topic + "}:idem:" + hex.EncodeToString(sum[:16])
}
func (b *Broker) idemKey(principal, key string) string {
	return b.cfg.Prefix + "idem:{" + principal + "\x00" + key + "}"
}

// topicOfChannel returns the topic of a stream channel, or ok false.
func (b *Broker) topicOfChannel(ch string) (string, bool) {
	rest, ok := strings.CutPrefix(ch, b.cfg.Prefix+"{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}:pub")
}

func randomHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(fmt.Sprintf("cluster: crypto/rand: %v", err))
	}
	return hex.EncodeToString(buf)
}

// newEpoch returns a fresh epoch: 128 random bits in hex.
func newEpoch() string { return randomHex(16) }

func (b *Broker) checkOpen() error {
	if b.closed.Load() {
		return hub.ErrBrokerClosed
	}
	return nil
}

// ms converts a duration to whole milliseconds, at least 1.
func ms(d time.Duration) int64 {
	return max(1, d.Milliseconds())
}

// Channel returns the pub/sub channel of topic (for tests and operators).
func (b *Broker) Channel(topic string) string { return b.channel(topic) }

// unavailableError is a failed Redis call: clients see "unavailable"
// (retryable) through protocol.AsError, logs see the cause.
type unavailableError struct{ err error }

func redisErr(format string, args ...any) error {
	return &unavailableError{fmt.Errorf(format, args...)}
}

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// As makes errors.As(err, **protocol.Error) see a retryable unavailable.
func (e *unavailableError) As(target any) bool {
	if pe, ok := target.(**protocol.Error); ok {
		*pe = &protocol.Error{Code: protocol.CodeUnavailable, Message: "the broker is unavailable", Retryable: true}
		return true
	}
	return false
}

// go-redis logs through a process-wide logger (to stderr by default, in
// its own format). Start routes it to the broker's slog.Logger (the last
// started broker's, for a process with several), so the server's logs
// stay in one format.
var (
	redisLogOnce sync.Once
	redisLog     atomic.Pointer[slog.Logger]
)

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l := redisLog.Load(); l != nil {
		l.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
	}
}

func routeRedisLogs(l *slog.Logger) {
	redisLog.Store(l)
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}
