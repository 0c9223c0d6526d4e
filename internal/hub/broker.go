package hub

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Broker is everything that must be cluster-wide. Code outside broker
// implementations never knows whether it runs on one node or many: the
// in-memory broker (MemoryBroker) serves one node, the Redis broker of a
// later release serves a cluster, and both satisfy this specification.
//
// # Streams
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
// # Delivery
//
// Publish delivers the publication to every node subscribed to the topic
// (Subscribe), calling BrokerHandler.HandlePublication on each, exactly
// once per node, in offset order per topic. A node that is subscribed sees
// every publication made after its Subscribe returned. Delivery to local
// connections is the hub's business, not the broker's.
//
// # Presence
//
// Presence is a per-topic set of clients (by connection id) with their info,
// each entry expiring after the ttl given by its last AddPresence unless
// refreshed, so that a crashed node's clients disappear.
//
// # Devices and nodes
//
// The broker knows which node holds a device's live connection (a lease
// with a ttl, refreshed while the connection lives) and carries messages
// between nodes (the RPC relay). On one node SendToNode to itself delivers
// to HandleNodeMessage.
//
// # Idempotency
//
// IdemClaim records that a principal's request key is being handled,
// returning the stored result when the key was seen before within the ttl.
//
// All methods are safe for concurrent use. Errors are returned wrapped;
// ErrBrokerClosed after Close.
type Broker interface {
	// Run starts delivering publications and node messages to h and
	// returns once the broker is ready. It must be called once, before
	// Subscribe.
	Run(ctx context.Context, h BrokerHandler) error
	// Close stops delivery and releases resources; safe to call twice.
	Close() error

	// Publish appends data to the topic's stream and delivers it. It never
	// blocks on slow subscribers.
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

	// AddPresence adds or refreshes a client in a topic's presence set.
	AddPresence(ctx context.Context, topic, clientID string, info ClientInfo, ttl time.Duration) error
	// RemovePresence removes a client from a topic's presence set.
	RemovePresence(ctx context.Context, topic, clientID string) error
	// Presence returns the topic's presence set by client id.
	Presence(ctx context.Context, topic string) (map[string]ClientInfo, error)

	// SetDeviceNode records that nodeID holds deviceID's connection, for ttl.
	SetDeviceNode(ctx context.Context, deviceID, nodeID string, ttl time.Duration) error
	// ClearDeviceNode removes the record if it still names nodeID.
	ClearDeviceNode(ctx context.Context, deviceID, nodeID string) error
	// DeviceNode returns the node holding deviceID, or ok false.
	DeviceNode(ctx context.Context, deviceID string) (nodeID string, ok bool, err error)
	// SendToNode delivers msg to nodeID's HandleNodeMessage.
	SendToNode(ctx context.Context, nodeID string, msg json.RawMessage) error

	// IdemClaim claims (principal, key) for ttl. When the key was claimed
	// before it returns first=false and the stored result, which may still
	// be pending (done=false) while the first request runs.
	IdemClaim(ctx context.Context, principal, key string, ttl time.Duration) (first bool, rec IdemRecord, err error)
	// IdemStore stores the result of a claimed key.
	IdemStore(ctx context.Context, principal, key string, result json.RawMessage, ttl time.Duration) error
}

// BrokerHandler receives what the broker delivers to this node. Its methods
// must not block for long: they run on the broker's delivery path.
type BrokerHandler interface {
	HandlePublication(topic string, pub Publication)
	HandleNodeMessage(msg json.RawMessage)
}

// StreamPosition is a position in a topic's stream.
type StreamPosition struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Publication is one message of a topic's stream.
type Publication struct {
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
	// Info describes the publisher, when it was a client.
	Info *ClientInfo `json:"info,omitempty"`
	// TimeMs is when the broker accepted the publication (Unix ms).
	TimeMs int64 `json:"timeMs"`
}

// PublishOptions are per-publication stream settings (from the topic's namespace).
type PublishOptions struct {
	HistorySize int
	HistoryTTL  time.Duration
	Info        *ClientInfo
}

// ClientInfo describes a connected client in presence sets and publications.
type ClientInfo struct {
	ConnID   string `json:"connId"`
	UserID   string `json:"userId,omitempty"`
	DeviceID string `json:"deviceId,omitempty"`
	Kind     string `json:"kind,omitempty"`
	NodeID   string `json:"nodeId,omitempty"`
}

// IdemRecord is the stored state of an idempotency key.
type IdemRecord struct {
	Done   bool
	Result json.RawMessage
}

// Broker errors.
var (
	ErrBrokerClosed = errors.New("broker closed")
	// ErrHistoryGap means the requested position cannot be recovered from
	// history: the caller must start over from a fresh snapshot.
	ErrHistoryGap = errors.New("position outside history")
)
