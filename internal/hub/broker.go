package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// The broker is everything that must be cluster-wide, cut by concern into
// four small interfaces: Streams (publications, history, positions),
// Presence, Directory (which node holds a device; node-to-node messages) and
// IdemRecords (idempotency, idem.go). Code outside their implementations
// never knows whether it runs on one node or many: MemoryBroker serves one
// node, a Redis implementation serves a cluster, and each passes the
// contract suite of its interface (package brokertest). Each part of the
// hub depends on the one interface it needs; Broker only bundles them for
// wiring.
//
// All methods of every interface are safe for concurrent use. Errors are
// returned wrapped; ErrBrokerClosed after Close.

// Streams is the contract of topic streams.
//
// Every topic has a stream: an epoch and a sequence of publications with
// offsets 1, 2, 3, ... assigned by Publish, in the order they are delivered.
// The epoch names one life of the stream; it changes when the stream's
// history is lost (a broker restart without persistence, history expiry of
// an idle topic), so that a position {epoch, offset} from an older life is
// recognisably stale. Offsets are never reused within an epoch.
//
// History keeps the last HistorySize publications of a topic for
// HistoryTTL after the last publication. A topic published with
// HistorySize 0 keeps no history but still has positions.
//
// Publish delivers the publication to every node subscribed to the topic
// (Subscribe), calling PublicationHandler.HandlePublication on each
// (or, for a handler that is a PublicationBatchHandler, HandlePublications
// with several at once), exactly once per node, in offset order per topic.
// A node that is subscribed sees every publication made after its
// Subscribe returned.
// Delivery to local connections is the hub's business, not the broker's.
type Streams interface {
	// Deliver makes the publications of the topics this node subscribes
	// to go to h and returns once delivery is ready. It is called once,
	// before Subscribe; a second call is an error.
	Deliver(ctx context.Context, h PublicationHandler) error
	// Publish appends data to the topic's stream and delivers it. It never
	// blocks on slow subscribers, and does not wait for a delivery of an
	// earlier publication of the topic in progress on this node (whatever
	// serialises the topic's offsets is not held across a fan-out).
	//
	// With opts.Idem, the publication is idempotent, atomically with the
	// offset: the first Publish of the topic with Idem.Key appends and
	// records its position for Idem.TTL; every later one (from any node)
	// appends nothing, delivers nothing and returns the recorded position,
	// or ErrIdemConflict when its Idem.Fingerprint differs.
	Publish(ctx context.Context, topic string, data json.RawMessage, opts PublishOptions) (StreamPosition, error)
	// Subscribe makes this node receive the topic's publications.
	Subscribe(ctx context.Context, topic string) error
	// Unsubscribe stops them.
	Unsubscribe(ctx context.Context, topic string) error
	// History returns publications after since (exclusive), oldest first,
	// at most limit (0 means all retained), and the stream's current
	// position. When since is in another epoch, or older than what history
	// retains, it returns ErrHistoryGap together with the current position
	// and no publications: never a partial set.
	History(ctx context.Context, topic string, since *StreamPosition, limit int) ([]Publication, StreamPosition, error)
	// Position returns the topic's current position (offset of the last
	// publication; 0 for a topic never published in this epoch).
	Position(ctx context.Context, topic string) (StreamPosition, error)
}

// Presence is the contract of presence sets: per topic, a set of clients
// (by connection id) with their info, each entry expiring after the ttl
// given by its last AddPresence unless refreshed, so that a crashed node's
// clients disappear.
type Presence interface {
	// AddPresence adds or refreshes a client in a topic's presence set.
	AddPresence(ctx context.Context, topic, clientID string, info ClientInfo, ttl time.Duration) error
	// RemovePresence removes a client from a topic's presence set.
	RemovePresence(ctx context.Context, topic, clientID string) error
	// Presence returns the topic's live presence set by client id.
	Presence(ctx context.Context, topic string) (map[string]ClientInfo, error)
}

// Directory is the contract of the node directory: which node holds a
// device's newest connection (a claim with a ttl, refreshed while the
// connection lives), whether a node runs, and messages between nodes (the
// RPC relay, replaced connections). A node sending to itself reaches its
// own NodeHandler.
//
// A device's claims have generations: each ClaimDevice gets one greater
// than every earlier claim of the device, so the newest connection wins
// across nodes. A claim and its refresh are separate calls, so that the
// refresh of an older connection never overwrites a newer claim.
type Directory interface {
	// Receive makes the messages addressed to this node go to h and
	// returns once delivery is ready. It is called once, before
	// SendToNode; a second call is an error.
	Receive(ctx context.Context, h NodeHandler) error
	// ClaimDevice records that nodeID holds deviceID's newest connection,
	// for ttl, under a generation greater than every earlier claim of the
	// device. It returns the generation and the node of the live claim it
	// replaced ("" when none).
	ClaimDevice(ctx context.Context, deviceID, nodeID string, ttl time.Duration) (gen uint64, prevNode string, err error)
	// RefreshDevice extends nodeID's claim of generation gen by ttl. It
	// reports false, changing nothing, when a newer claim of the device
	// was made. A claim the directory lost (a restart without its data) is
	// recreated with gen.
	RefreshDevice(ctx context.Context, deviceID, nodeID string, gen uint64, ttl time.Duration) (bool, error)
	// ClearDevice removes the claim if it is still nodeID's of generation gen.
	ClearDevice(ctx context.Context, deviceID, nodeID string, gen uint64) error
	// DeviceNode returns the node holding deviceID, or ok false (no live
	// claim, or the claim's node is no longer running).
	DeviceNode(ctx context.Context, deviceID string) (nodeID string, ok bool, err error)
	// NodeAlive reports whether nodeID runs (its node lease is live). A
	// node is alive to itself.
	NodeAlive(ctx context.Context, nodeID string) (bool, error)
	// SendToNode delivers msg to nodeID's NodeHandler, in order per
	// destination node.
	SendToNode(ctx context.Context, nodeID string, msg json.RawMessage) error
}

// PublicationHandler receives what Streams deliver to this node. It must
// not block for long: it runs on the broker's delivery path.
type PublicationHandler interface {
	HandlePublication(topic string, pub Publication)
}

// PublicationBatchHandler is a PublicationHandler that also takes several
// publications of one topic at once: a broker that has more than one
// waiting for delivery may hand them over together, in offset order, with
// the same effect as HandlePublication of each in turn (the hub's fan-out
// then queues them to each subscriber at once).
type PublicationBatchHandler interface {
	PublicationHandler
	HandlePublications(topic string, pubs []Publication)
}

// NodeHandler receives the node messages the Directory delivers to this
// node. It must not block for long: it runs on the broker's delivery path.
type NodeHandler interface {
	HandleNodeMessage(msg json.RawMessage)
}

// BrokerHandler receives both kinds of delivery (the hub is one).
type BrokerHandler interface {
	PublicationHandler
	NodeHandler
}

// Broker bundles one implementation of each concern for wiring (Deps). The
// parts may be one value (MemoryBroker serves Streams, Presence and
// Directory) or different ones (the binary keeps idempotency records in the
// store). A nil part is filled by the hub with a memory implementation.
//
// Streams, Presence and Directory that own goroutines implement
// Start(ctx) error, those that hold resources implement io.Closer: the hub
// runs and closes them (Run, Close: each distinct value once). Records are
// not run or closed by the hub: the binary's are its store, which it
// closes itself.
type Broker struct {
	Streams   Streams
	Presence  Presence
	Directory Directory
	Records   IdemRecords
}

// parts returns the distinct non-nil parts of b the hub runs and closes.
func (b Broker) parts() []any {
	var out []any
	for _, p := range []any{b.Streams, b.Presence, b.Directory} {
		if p == nil {
			continue
		}
		dup := false
		for _, q := range out {
			if q == p {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out
}

// Run starts the parts that own goroutines, then delivery to h. It returns
// once every part is ready.
func (b Broker) Run(ctx context.Context, h BrokerHandler) error {
	for _, p := range b.parts() {
		if s, ok := p.(interface{ Start(context.Context) error }); ok {
			if err := s.Start(ctx); err != nil {
				return fmt.Errorf("start %T: %w", p, err)
			}
		}
	}
	if err := b.Streams.Deliver(ctx, h); err != nil {
		return fmt.Errorf("streams deliver: %w", err)
	}
	if err := b.Directory.Receive(ctx, h); err != nil {
		return fmt.Errorf("directory receive: %w", err)
	}
	return nil
}

// Close closes every part that is an io.Closer, each once, and returns the
// first error.
func (b Broker) Close() error {
	var first error
	for _, p := range b.parts() {
		if c, ok := p.(io.Closer); ok {
			if err := c.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// StreamPosition is a position in a topic's stream. It is the wire type:
// positions reach clients as they are.
type StreamPosition = protocol.StreamPosition

// Publication is one message of a topic's stream, as the broker stores and
// delivers it and as channel.subscribe and channel.history list it.
type Publication = protocol.Publication

// PublishOptions are per-publication stream settings (from the topic's namespace).
type PublishOptions struct {
	// Event is the publication's event name as stored: "" for the default
	// ("message"); see protocol.NormalizePublicationEvent. The broker keeps
	// it with the publication (history, delivery) and gives it back in
	// Publication.Event.
	Event       string
	HistorySize int
	HistoryTTL  time.Duration
	Info        *ClientInfo
	// Idem, when set, makes the publication idempotent (Streams.Publish).
	Idem *PublishIdem
}

// PublishIdem is the idempotency key of a publication. The record it makes
// is the topic's (a key is recorded per topic): the hub's records
// (IdemRecords) still decide which request runs; this one makes sure that
// a request run twice (its first run's node died before recording its
// outcome) does not publish twice.
type PublishIdem struct {
	// Key is the principal's key and the request's: 1 to 1,024 bytes.
	Key string
	// Fingerprint names the request (Fingerprint); a repeat with another
	// fingerprint gets ErrIdemConflict.
	Fingerprint string
	// TTL is how long the record lives, from the first publication.
	TTL time.Duration
}

// ClientInfo describes a connected client in presence sets and publications
// (the wire type).
type ClientInfo = protocol.ClientInfo

// Broker errors.
var (
	ErrBrokerClosed = errors.New("broker closed")
	// ErrHistoryGap means the requested position cannot be recovered from
	// history: the caller must start over from a fresh snapshot.
	ErrHistoryGap = errors.New("position outside history")
	// ErrIdemConflict means a publication's idempotency key was recorded
	// with another fingerprint (PublishIdem).
	ErrIdemConflict = errors.New("idempotency key used for another publication")
)
