package protocol

import "time"

// Payloads of the admin API (docs/api.md, "Admin"): the live statistics
// published on AdminStatsTopic and the REST bodies of /api/v1/admin/...,
// which the web console reads. Every admin endpoint needs scope admin.

// AdminStatsTopic is the channel on which each node publishes an AdminStats
// once a second while the channel has subscribers on that node. Only
// principals with scope admin may subscribe; nobody may publish (the server
// does). It keeps the last 60 publications for 2 minutes, so a console
// that subscribes can draw the last minute at once (channel.history).
const AdminStatsTopic = "admin:stats"

// AdminStats is the data of each channel.message on admin:stats: one node's
// traffic over the interval that ended at At. Counts are over the
// interval; rates are the counts divided by its length.
type AdminStats struct {
	NodeID     string    `json:"nodeId"`
	At         time.Time `json:"at"`
	IntervalMs int64     `json:"intervalMs" schema:"min=0" doc:"length of the interval the counts cover"`
	// Connections is the number of open WebSocket connections at At;
	// ConnectionsByKind splits it by device kind (phone, tablet, tv,
	// glasses, browser, machine, iot; app for app keys, other for the rest).
	Connections       int            `json:"connections" schema:"min=0"`
	ConnectionsByKind map[string]int `json:"connectionsByKind" schema:"nonnull"`
	// Publications made through this node, and channel.message frames
	// queued to its subscribers.
	Publications       uint64  `json:"publications"`
	PublicationsPerSec float64 `json:"publicationsPerSec"`
	Deliveries         uint64  `json:"deliveries"`
	DeliveriesPerSec   float64 `json:"deliveriesPerSec"`
	// Requests are the WebSocket requests this node answered (every
	// method), RequestLatency their handling time.
	Requests       uint64       `json:"requests"`
	RequestsPerSec float64      `json:"requestsPerSec"`
	RequestLatency AdminLatency `json:"requestLatency"`
	// RPCCalls are the rpc.call requests this node relayed, RPCLatency
	// the time from request to answer as the caller saw it.
	RPCCalls       uint64       `json:"rpcCalls"`
	RPCCallsPerSec float64      `json:"rpcCallsPerSec"`
	RPCLatency     AdminLatency `json:"rpcLatency"`
}

// AdminLatency are quantiles of the durations observed in an interval, in
// milliseconds, estimated from the server's latency histogram buckets
// (linear within a bucket, as Prometheus' histogram_quantile); 0 when
// nothing was observed.
type AdminLatency struct {
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
}

// AdminConnection is one open WebSocket connection as the admin API lists it.
type AdminConnection struct {
	ID          string    `json:"id"`
	NodeID      string    `json:"nodeId"`
	Principal   Principal `json:"principal"`
	RemoteAddr  string    `json:"remoteAddr,omitempty"`
	ConnectedAt time.Time `json:"connectedAt"`
}

// AdminConnectionList answers GET /api/v1/admin/connections: one page, by
// connection id; NextCursor is set when more follow.
type AdminConnectionList struct {
	Items      []AdminConnection `json:"items" schema:"nonnull"`
	NextCursor string            `json:"nextCursor,omitempty"`
}

// AdminConnectionDetail answers GET /api/v1/admin/connections/{id}.
type AdminConnectionDetail struct {
	AdminConnection
	// Subscriptions are the channels the connection is subscribed to, by
	// name (at most hub.max_subscriptions).
	Subscriptions []string `json:"subscriptions" schema:"nonnull"`
	// Methods are the RPC methods the connection serves (rpc.register).
	Methods []string `json:"methods" schema:"nonnull"`
	// QueueFrames and QueueBytes are what waits in its outbound queue.
	QueueFrames int `json:"queueFrames" schema:"min=0"`
	QueueBytes  int `json:"queueBytes" schema:"min=0"`
}

// AdminDisconnected answers DELETE /api/v1/admin/connections/{id}.
type AdminDisconnected struct {
	ID   string `json:"id"`
	Code int    `json:"code" doc:"the close code the connection was closed with (4011)"`
}

// AdminChannel is one channel with subscribers on a node.
type AdminChannel struct {
	Topic       string `json:"topic"`
	NodeID      string `json:"nodeId"`
	Subscribers int    `json:"subscribers" schema:"min=0"`
}

// AdminChannelList answers GET /api/v1/admin/channels: one page, by topic.
type AdminChannelList struct {
	Items      []AdminChannel `json:"items" schema:"nonnull"`
	NextCursor string         `json:"nextCursor,omitempty"`
}

// AdminChannelDetail answers GET /api/v1/admin/channels/{topic}.
type AdminChannelDetail struct {
	AdminChannel
	// Connections are the ids of this node's subscribing connections, at
	// most the first 1,000 by id.
	Connections []string `json:"connections" schema:"nonnull"`
	// Presence is the channel's presence set (every node's), absent when
	// its namespace keeps none.
	Presence map[string]ClientInfo `json:"presence,omitempty"`
	// Epoch and Offset are the channel's stream position; HistorySize the
	// publications its namespace keeps.
	Epoch       string `json:"epoch"`
	Offset      uint64 `json:"offset"`
	HistorySize int    `json:"historySize" schema:"min=0"`
}

// AdminMachine is a device serving RPC methods on a node.
type AdminMachine struct {
	DeviceID string   `json:"deviceId"`
	UserID   string   `json:"userId"`
	Kind     string   `json:"kind,omitempty"`
	ConnID   string   `json:"connId"`
	NodeID   string   `json:"nodeId"`
	Methods  []string `json:"methods" schema:"nonnull"`
}

// AdminMachineList answers GET /api/v1/admin/machines: one page, by device id.
type AdminMachineList struct {
	Items      []AdminMachine `json:"items" schema:"nonnull"`
	NextCursor string         `json:"nextCursor,omitempty"`
}

// AdminAccount is an account as the admin API lists it.
type AdminAccount struct {
	ID        string    `json:"id"`
	PublicKey []byte    `json:"publicKey"`
	CreatedAt time.Time `json:"createdAt"`
}

// AdminAccountList answers GET /api/v1/admin/accounts: one page, newest
// first.
type AdminAccountList struct {
	Items      []AdminAccount `json:"items" schema:"nonnull"`
	NextCursor string         `json:"nextCursor,omitempty"`
}

// AdminAccountParams are the params of the admin account operations: the
// account (from the path), and the page of accounts.
type AdminAccountParams struct {
	AccountID string `json:"accountId,omitempty"`
	Cursor    string `json:"cursor,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

// AdminDeviceParams name one device of one account (both from the path).
type AdminDeviceParams struct {
	AccountID string `json:"accountId"`
	ID        string `json:"id"`
}
