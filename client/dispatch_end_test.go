package client

import (
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

// TestEventsBeforeCloseReachHandlers: a server that sends events and then
// closes (app.stopped, then 1000) has every event handled before Done,
// though the connection ended while the handlers were still busy.
func TestEventsBeforeCloseReachHandlers(t *testing.T) {
	ts := newTestServer(t)
	c := ts.dial(t, ts.options())
	sc := ts.nextConn(t)
	var got atomic.Int32
	c.OnEvent("test.event", func(f *protocol.Frame) {
		if got.Add(1) == 1 {
			<-sc.done // busy until the connection is gone
		}
	})
	const n = 50
	frames := make([][]byte, 0, n)
	for i := range n {
		data, _ := json.Marshal(i)
		frames = append(frames, protocol.AppendEvent(nil, "test.event", "", "", 0, data))
	}
	sc.sendBatch(frames...)
	sc.closeWith(protocol.CloseNormal, "bye")
	waitClosed(t, "Done", c.Done())
	if g := got.Load(); g != n {
		t.Fatalf("handled %d events, want %d", g, n)
	}
}
