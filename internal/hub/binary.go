package hub

import (
	"encoding/json"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// Binary messages (the apps platform's device stream frames). The
// transport hands a connection's binary messages, up to
// Config.MaxBinaryBytes, to Conn.OnBinary, which passes them to the one
// BinaryHandler; without one (or on a compact connection) a binary message
// closes the connection with 1003, as it always did. The text path is
// untouched: binary messages have their own callback, and what a handler
// sends goes through the same bounded queue as every other frame.

// DefaultMaxBinaryBytes is the default of Config.MaxBinaryBytes.
const DefaultMaxBinaryBytes = 32 << 10

// BinaryHandler receives a connection's binary messages, in order with its
// text messages, on the connection's read goroutine: it must not block.
// payload is valid only during the call.
type BinaryHandler func(c *Conn, payload []byte)

// SetBinaryHandler installs the handler of binary messages. Call before
// Start.
func (h *Hub) SetBinaryHandler(fn BinaryHandler) {
	if h.started.Load() {
		panic("hub: SetBinaryHandler after Start")
	}
	h.binary = fn
}

var _ ws.BinaryHandler = (*Conn)(nil)

// OnBinary implements ws.BinaryHandler.
func (c *Conn) OnBinary(w *ws.Conn, payload []byte) {
	c.ws.CompareAndSwap(nil, w)
	c.welcome()
	if c.hub.binary == nil || c.compact != nil {
		w.Disconnect(protocol.DisconnectUnsupportedData)
		return
	}
	c.hub.metrics.framesIn.Inc()
	c.hub.binary(c, payload)
}

// SendBinary queues a frame prepared with ws.PrepareBinary (shared by many
// connections). It never blocks; it reports whether the frame was queued.
// A compact connection takes no binary frames.
func (c *Conn) SendBinary(frame []byte) bool {
	if c.compact != nil {
		return false
	}
	return c.sendWire(frame)
}

// QueueLen returns the frames and bytes queued for the connection and not
// yet written to its socket.
func (c *Conn) QueueLen() (frames, bytes int) {
	if w := c.ws.Load(); w != nil {
		return w.QueueLen()
	}
	return 0, 0
}

// PrepareBinary returns a binary frame carrying payload (a copy), for
// SendBinary on one connection or many.
func PrepareBinary(payload []byte) []byte { return ws.PrepareBinary(payload) }

// PrepareEvent returns an event frame without topic or position, for
// SendPrepared on one connection or many.
func PrepareEvent(event string, data json.RawMessage) []byte {
	return ws.PrepareText(protocol.AppendEvent(nil, event, "", "", 0, data))
}
