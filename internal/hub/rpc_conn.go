package hub

import (
	"encoding/json"
	"sync"

	"github.com/junctionhq/junction/internal/ws"
	"github.com/junctionhq/junction/protocol"
)

// startRequest sends a server→client request like Request, but returns as
// soon as it is queued: the caller learns the request id before any frame
// about it (a progress event, the response) can arrive, and waits on ch
// itself. before runs with the id before the frame is queued. A nil frame on
// ch means the connection closed. The caller must c.forget(id) when it stops
// waiting without a response.
func (c *Conn) startRequest(method string, params json.RawMessage, meta *protocol.Meta, before func(id string)) (string, chan *protocol.Frame, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", nil, protocol.Errorf(protocol.CodeUnavailable, "target disconnected")
	}
	id := c.nextRequestIDLocked()
	ch := make(chan *protocol.Frame, 1)
	c.addPendingLocked(id, ch)
	c.mu.Unlock()

	if before != nil {
		before(id)
	}
	// The payload is built in a pooled buffer (the frame is a copy of it):
	// a stack buffer this deep in a call's goroutine makes its stack grow.
	bp := framePool.Get().(*[]byte)
	b, err := protocol.AppendRequest((*bp)[:0], id, method, params, "", meta)
	if err != nil {
		framePool.Put(bp)
		c.forget(id)
		return id, nil, err
	}
	frame := ws.PrepareText(b)
	if cap(b) <= 64<<10 {
		*bp = b
		framePool.Put(bp)
	}
	if !c.sendFrame(frame) {
		c.forget(id)
		return id, nil, protocol.Errorf(protocol.CodeUnavailable, "target disconnected")
	}
	return id, ch, nil
}

// framePool holds buffers to build frames in before ws.PrepareText copies
// them.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// nextRequestID reserves the id of a server→client request, like
// startRequest but for a caller that routes the response itself (the RPC
// fast path, through relayResponse). It reports false when the connection
// has closed.
func (c *Conn) nextRequestID() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", false
	}
	return c.nextRequestIDLocked(), true
}

// failPendingResponse handles a frame that failed to decode: when it is a
// response ("type":"res") to a pending server request, the waiter gets an
// internal error instead of waiting for its timeout, the client is told
// with an "error" event, and it returns true.
func (c *Conn) failPendingResponse(raw []byte, derr error) bool {
	var probe struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	if json.Unmarshal(raw, &probe) != nil || probe.Type != protocol.TypeResponse || probe.ID == "" {
		return false
	}
	c.mu.Lock()
	ch := c.takePendingLocked(probe.ID)
	c.mu.Unlock()
	var ic inlineRelay
	if ch == nil {
		if ic = c.hub.rpc.inlineCallOf(c, []byte(probe.ID)); ic == nil {
			return false
		}
	}
	c.hub.log.Warn("malformed response to a server request", "conn", c.ID(), "user", c.Principal().UserID,
		"device", c.Principal().DeviceID, "id", probe.ID, "err", derr)
	f := &protocol.Frame{Type: protocol.TypeResponse, ID: probe.ID, Error: errMalformedResponse()}
	if ic != nil {
		ic.response(f)
	} else {
		ch <- f
	}
	data, _ := jsonMarshal(protocol.AsError(derr))
	c.SendEvent(protocol.EventError, "", "", 0, data)
	return true
}

func errMalformedResponse() *protocol.Error {
	return protocol.Errorf(protocol.CodeInternal, "the target sent a malformed response")
}
