package client

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/junctionhq/junction/protocol"
)

// serverFrame is the wire form of a server's frame (unmasked).
func serverFrame(tb testing.TB, fr ws.Frame) []byte {
	tb.Helper()
	b, err := ws.CompileFrame(fr)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzClientRead is the SDK's read path under a hostile server: after the
// welcome, the fuzzed bytes arrive as the raw WebSocket stream (frames,
// batches, requests it serves, responses, control frames). The client
// must not panic or hang: the connection ends when the stream does (or
// earlier, on a violation), Done closes and Close returns.
func FuzzClientRead(f *testing.F) {
	text := func(s string) []byte { return serverFrame(f, ws.NewTextFrame([]byte(s))) }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, seed := range [][]byte{
		text(`{"type":"event","event":"channel.message","topic":"session:a","epoch":"e1","offset":3,"data":{"x":1}}`),
		text(`{"type":"event","event":"channel.message","topic":"t","data":1}` + "\n" + `{"type":"res","id":"9","ok":true,"result":null}`),
		text(`{"type":"req","id":"s1","method":"echo","params":{"a":[1,2]},"meta":{"caller":{"userId":"u"}}}`),
		text(`{"type":"req","id":"s2","method":"nope"}`),
		text(`{"type":"event","event":"server.shutdown","data":{"reconnectAfterMs":5,"reason":"deploy"}}`),
		text(`{"type":"event","event":"token.expiring","data":{"expiresAtMs":1}}`),
		text(`{"type":"res","id":"1","ok":false,"error":{"code":"forbidden","message":"no","retryable":false}}`),
		text(`not json`),
		cat(serverFrame(f, ws.NewFrame(ws.OpText, false, []byte(`{"type":"ev`))),
			serverFrame(f, ws.NewPingFrame([]byte("hb"))),
			serverFrame(f, ws.NewFrame(ws.OpContinuation, true, []byte(`ent","event":"x"}`)))),
		serverFrame(f, ws.NewBinaryFrame([]byte{1, 2, 3})),
		serverFrame(f, ws.NewCloseFrame(ws.NewCloseFrameBody(protocol.CloseTokenExpired, "expired"))),
		serverFrame(f, ws.NewCloseFrame(ws.NewCloseFrameBody(1012, ""))),
		{0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	welcome, _ := json.Marshal(protocol.Welcome{Protocol: protocol.Version, ConnID: "c1", NodeID: "fuzz",
		Principal:   protocol.Principal{UserID: "u", DeviceID: "d", Kind: "machine", Scopes: []string{"read"}},
		HeartbeatMs: 60_000, HeartbeatTimeoutMs: 60_000, Limits: protocol.Limits{MaxFrameBytes: 1 << 16}, Features: []string{FeatureBatch}})
	welcomeFrame := serverFrame(f, ws.NewTextFrame(protocol.AppendEvent(nil, protocol.EventWelcome, "", "", 0, welcome)))

	f.Fuzz(func(t *testing.T, stream []byte) {
		served := make(chan error, 1)
		opts := Options{URL: "ws://fuzz.invalid/ws", Token: "t", HandshakeTimeout: 5 * time.Second, CallTimeout: time.Second, MaxMessageBytes: 1 << 16}
		opts.netDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			cc, sc := net.Pipe()
			go func() {
				defer sc.Close()
				u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == protocol.Subprotocol }}
				if _, err := u.Upgrade(sc); err != nil {
					served <- err
					return
				}
				go func() { _, _ = io.Copy(io.Discard, sc) }() // whatever the client answers
				_, err := sc.Write(welcomeFrame)
				if err == nil {
					_, _ = sc.Write(stream) // fails once the client gives up on the stream
				}
				served <- err
			}()
			return cc, nil
		}
		c := New(opts)
		c.Handle("echo", func(ctx context.Context, req *protocol.Frame) (any, error) { return req.Params, nil })
		c.OnEvent(protocol.EventChannelMessage, func(*protocol.Frame) {})
		if err := c.Connect(t.Context()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if err := <-served; err != nil {
			t.Fatalf("fake server: %v", err)
		}
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("the client still runs 10s after the stream ended")
		}
		closed := make(chan struct{})
		go func() {
			c.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("Close did not return within 10s")
		}
	})
}
