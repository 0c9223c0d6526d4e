package protocol

import "encoding/json"

// Channel events sent by the server.
const (
	// EventChannelMessage carries one publication: topic, epoch, offset and
	// the published data.
	EventChannelMessage = "channel.message"
	// EventChannelJoin and EventChannelLeave announce presence changes on
	// channels with presence (topic set); data is a ClientInfo.
	EventChannelJoin  = "channel.join"
	EventChannelLeave = "channel.leave"
	// EventChannelUnsubscribed tells a client the server removed one of its
	// subscriptions (topic set); data is an Unsubscribed.
	EventChannelUnsubscribed = "channel.unsubscribed"
)

// StreamPosition is a position in a topic's stream.
type StreamPosition struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Publication is one retained message of a topic's stream, as listed by
// channel.subscribe (recovered) and channel.history.
type Publication struct {
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
	// Info describes the publisher, when it was a client.
	Info *ClientInfo `json:"info,omitempty"`
	// TimeMs is when the broker accepted the publication (Unix ms).
	TimeMs int64 `json:"timeMs"`
}

// ClientInfo describes a connected client in presence sets, join and leave
// events and publications.
type ClientInfo struct {
	ConnID   string `json:"connId"`
	UserID   string `json:"userId,omitempty"`
	DeviceID string `json:"deviceId,omitempty"`
	Kind     string `json:"kind,omitempty"`
	NodeID   string `json:"nodeId,omitempty"`
	// Info is what the backend proxy's connect hook attached to the
	// connection (docs/proxy.md), absent without one.
	Info json.RawMessage `json:"info,omitempty"`
}

// TopicParams are the params of channel.unsubscribe and channel.presence.
type TopicParams struct {
	Topic string `json:"topic"`
}

// SubscribeParams are the params of channel.subscribe. Since resumes from a
// position the client already has.
type SubscribeParams struct {
	Topic string          `json:"topic"`
	Since *StreamPosition `json:"since,omitempty"`
}

// SubscribeResult is the result of channel.subscribe.
type SubscribeResult struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
	// Recovered is true when the request's since position was resumed from
	// history: Publications are exactly the ones missed. When false the
	// client starts over from Snapshot (when the namespace has one) and the
	// position.
	Recovered    bool            `json:"recovered"`
	Snapshot     json.RawMessage `json:"snapshot,omitempty"`
	Publications []Publication   `json:"publications,omitempty"`
}

// PublishParams are the params of channel.publish.
type PublishParams struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

// PublishResult is the result of channel.publish and of the REST publish:
// the publication's position.
type PublishResult struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// PresenceResult is the result of channel.presence and of the REST
// presence: the subscribed clients by connection id.
type PresenceResult struct {
	Clients map[string]ClientInfo `json:"clients" schema:"nonnull"`
}

// HistoryParams are the params of channel.history: without Since the most
// recent Limit publications (all retained when 0), with Since the first Limit
// after it.
type HistoryParams struct {
	Topic string          `json:"topic"`
	Since *StreamPosition `json:"since,omitempty"`
	Limit int             `json:"limit,omitempty" schema:"min=0"`
}

// HistoryResult is the result of channel.history and of the REST history.
type HistoryResult struct {
	Epoch        string        `json:"epoch"`
	Offset       uint64        `json:"offset"`
	Publications []Publication `json:"publications" schema:"nonnull"`
}

// Unsubscribed is the data of channel.unsubscribed.
type Unsubscribed struct {
	// Reason is "forbidden" (permission lost), "server" (removed by the
	// application) or "reset" (the stream lost its history).
	Reason string `json:"reason" schema:"enum=forbidden|server|reset"`
	// Resubscribe advises subscribing again (with since).
	Resubscribe bool `json:"resubscribe"`
}

// ChannelPublishBody is the body of the REST publish
// (POST /api/v1/channels/{topic}/publish).
type ChannelPublishBody struct {
	Data json.RawMessage `json:"data"`
}
