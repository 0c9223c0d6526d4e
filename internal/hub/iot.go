package hub

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// IoTConfig configures /ws/iot, the compact protocol's endpoint for
// constrained devices (docs/iot.md). Its connections live on a transport
// of their own, with these limits and heartbeat; everything else (the
// registry, channels, presence, the RPC relay, request rate and
// subscription limits) is the hub's. The zero value of every field selects
// its documented default.
type IoTConfig struct {
	// MaxFrameBytes bounds one message in either direction: a bigger
	// inbound message closes the connection with 1009, a bigger outbound
	// publication is replaced by a skipped message. Default 4096.
	MaxFrameBytes int `yaml:"max_frame_bytes" doc:"largest WebSocket message on /ws/iot, both ways: a bigger inbound one closes with 1009, a bigger publication is replaced by [topic, \"skipped\", {offset, reason}] (default 4096)"`
	// MaxQueueBytes and MaxQueueFrames bound each connection's outbound
	// queue (4108 on overflow). Defaults 64 KiB and 64.
	MaxQueueBytes  int `yaml:"max_queue_bytes" doc:"outbound queue bound per /ws/iot connection in bytes (default 65536)"`
	MaxQueueFrames int `yaml:"max_queue_frames" doc:"outbound queue bound per /ws/iot connection in messages (default 64)"`
	// HeartbeatInterval and HeartbeatTimeout: how often the server pings a
	// device, and how long it waits for anything back. Defaults 20 s, 10 s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" doc:"WebSocket ping interval on /ws/iot (default 20s)"`
	HeartbeatTimeout  time.Duration `yaml:"heartbeat_timeout" doc:"close a /ws/iot connection that sends nothing within this after a ping, with 4102 (default 10s)"`
}

// DefaultIoTMaxFrameBytes is IoTConfig.MaxFrameBytes's default.
const DefaultIoTMaxFrameBytes = 4096

func (c *IoTConfig) setDefaults() {
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultIoTMaxFrameBytes
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = 64 << 10
	}
	if c.MaxQueueFrames == 0 {
		c.MaxQueueFrames = 64
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 20 * time.Second
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 10 * time.Second
	}
}

// Validate reports the first invalid setting.
func (c IoTConfig) Validate() error {
	switch {
	case c.MaxFrameBytes < 0 || (c.MaxFrameBytes > 0 && c.MaxFrameBytes < 256) || c.MaxFrameBytes > 16<<20:
		return errors.New("max_frame_bytes must be between 256 bytes and 16 MiB")
	case c.MaxQueueBytes < 0 || c.MaxQueueFrames < 0:
		return errors.New("max_queue_bytes and max_queue_frames must not be negative")
	case c.MaxQueueBytes > 1<<30:
		return errors.New("max_queue_bytes must be at most 1 GiB")
	case c.HeartbeatInterval < 0 || c.HeartbeatTimeout < 0:
		return errors.New("heartbeat_interval and heartbeat_timeout must not be negative")
	}
	return nil
}

// newIoTTransport returns the transport of /ws/iot connections: one loop
// and one writer (devices send little), the IoT limits and heartbeat.
func newIoTTransport(cfg Config) *ws.Transport {
	return ws.New(ws.Config{
		Kind:            ws.Kind(cfg.Transport),
		MaxMessageBytes: cfg.IoT.MaxFrameBytes,
		MaxQueueBytes:   cfg.IoT.MaxQueueBytes,
		MaxQueueFrames:  cfg.IoT.MaxQueueFrames,
		WriteTimeout:    cfg.WriteTimeout,
		PingInterval:    cfg.IoT.HeartbeatInterval,
		PongTimeout:     cfg.IoT.HeartbeatTimeout,
		Loops:           1,
		Writers:         1,
	})
}

// KindIoT is the token kind /ws/iot accepts.
const KindIoT = "iot"

// UpgradeIoT is Upgrade for /ws/iot: the connection speaks the compact
// protocol under the IoT limits and heartbeat. Only a principal of kind
// "iot" is accepted (forbidden otherwise, before anything is upgraded).
// subprotocol is answered as is: "" or protocol.CompactSubprotocol when
// the client offered it.
func (h *Hub) UpgradeIoT(w http.ResponseWriter, r *http.Request, p *auth.Principal, subprotocol string) (*Conn, error) {
	if p.Kind != KindIoT {
		return nil, protocol.Errorf(protocol.CodeForbidden, "/ws/iot accepts only tokens of kind iot (this one is %q)", p.Kind)
	}
	cc := &compactConn{
		maxOut: h.cfg.IoT.MaxFrameBytes,
		pingMs: h.cfg.IoT.HeartbeatInterval.Milliseconds(),
		pongMs: h.cfg.IoT.HeartbeatTimeout.Milliseconds(),
	}
	return h.upgrade(w, r, p, subprotocol, h.iot, cc)
}

// UpgradeCompact is Upgrade for a /ws client that chose the subprotocol
// protocol.CompactSubprotocol: the compact protocol under the hub's own
// limits and heartbeat (hub.max_frame_bytes also bounds what it is sent).
func (h *Hub) UpgradeCompact(w http.ResponseWriter, r *http.Request, p *auth.Principal) (*Conn, error) {
	cc := &compactConn{
		maxOut: h.cfg.MaxFrameBytes,
		pingMs: h.cfg.HeartbeatInterval.Milliseconds(),
		pongMs: h.cfg.HeartbeatTimeout.Milliseconds(),
	}
	return h.upgrade(w, r, p, protocol.CompactSubprotocol, h.transport, cc)
}

// upgrade is Upgrade on transport t, with the compact codec when cc is set.
func (h *Hub) upgrade(w http.ResponseWriter, r *http.Request, p *auth.Principal, subprotocol string, t *ws.Transport, cc *compactConn) (*Conn, error) {
	if h.draining.Load() {
		return nil, protocol.Errorf(protocol.CodeUnavailable, "server is shutting down")
	}
	info, err := h.interceptConnect(r.Context(), p)
	if err != nil {
		return nil, err
	}
	if err := h.admit(r.Context(), p); err != nil {
		return nil, err
	}
	c := newConn(h, p)
	if len(info) > 0 {
		c.SetValue(connInfoKey{}, info)
	}
	c.compact = cc
	c.setState(connAdmitted)
	// Corked: the 101 response and the welcome leave in one write, from
	// this goroutine, rather than as two writes with a writer's wake-up.
	wsc, err := t.UpgradeWith(w, r, subprotocol, c, ws.AttachOptions{Corked: true})
	if err != nil {
		c.releaseSlot()
		return nil, fmt.Errorf("hub: upgrade: %w", err)
	}
	c.attach(wsc)
	wsc.Uncork()
	return c, nil
}
