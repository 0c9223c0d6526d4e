// Package client is the Go SDK of Junction: it connects to a Junction
// server over WebSocket, authenticates with a bearer token, makes calls,
// receives events, serves methods the server calls on it (machines), and
// reconnects with backoff when the connection ends.
//
// Usage:
//
//	c := client.New(client.Options{
//		URL:       "ws://127.0.0.1:7700/ws",
//		Token:     token,
//		Reconnect: true,
//	})
//	c.OnEvent("channel.message", func(f *protocol.Frame) {
//		fmt.Println(f.Topic, string(f.Data))
//	})
//	c.OnConnect(func(ctx context.Context, c *client.Client, reconnected bool) {
//		// subscribe (again) here
//	})
//	if err := c.Connect(ctx); err != nil {
//		return err // a *client.HandshakeError when the server refused the upgrade
//	}
//	defer c.Close()
//
//	var pong struct{ Pong bool }
//	if err := c.Call(ctx, "sys.ping", nil, &pong); err != nil {
//		var perr *protocol.Error
//		if errors.As(err, &perr) && perr.Retryable {
//			// try again later
//		}
//		return err
//	}
//
// Dial(ctx, opts) is New followed by Connect, for clients that register
// nothing before connecting.
//
// # Connections
//
// Each connection has one reader and one writer goroutine. The reader
// accepts one frame per WebSocket message or several separated by '\n',
// answers pings, hands binary messages to the OnBinary handlers (in order
// with the events; without a handler they are discarded), and watches the
// server: when nothing (no frame, no ping) arrives within the welcome's
// heartbeatMs + heartbeatTimeoutMs, the connection is considered dead. The
// writer owns the socket and joins frames queued at the same moment into
// one message; SendBinary's messages go alone, in order with the frames.
//
// # Reconnecting
//
// With Options.Reconnect, a connection that ends is replaced after a
// backoff with jitter, except when its close code advises against it
// (protocol.DisconnectFor: 1000, 1008, 4000-4099 and a few others) or a
// reconnect is refused with 401/403 and there is no TokenFunc; then the
// client closes and Done is closed. After a server.shutdown event the
// client waits the announced reconnectAfterMs plus jitter. Calls are not
// queued while disconnected: they fail at once with code "unavailable".
// OnConnect hooks run after every welcome, which is where higher layers
// resubscribe and re-register.
//
// # Token refresh
//
// On a token.expiring event, a client with Options.TokenFunc fetches a
// fresh token and sends it with method "auth.refresh" {"token": ...}. The
// server may not support in-band refresh yet; its unknown_method answer is
// ignored, and the next connection uses a fresh token anyway.
package client
