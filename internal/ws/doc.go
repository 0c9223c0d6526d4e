// Package ws is Junction's WebSocket transport: the server side of the
// opening handshake (ServerHandshake; the response can leave in one write
// with the first frames, see AttachOptions.Corked), RFC 6455 framing
// (masking through github.com/gobwas/ws), an epoll read loop and a batched,
// non-blocking write path.
//
// # Shape
//
// A Transport runs Config.Loops epoll loops, Config.Writers writer goroutines
// and one heartbeat goroutine; it starts no goroutine per connection. An idle
// connection holds no goroutine, no buffer and no timer: a loop reads every
// readable socket into its own scratch buffer, and only a connection with an
// incomplete frame keeps a private buffer until the frame is complete.
//
// A connection's socket is a descriptor: one the transport owns outright
// (AttachFD, or UpgradeWith through an FDHijacker: the server's front door
// never makes a net.Conn of a WebSocket), or one borrowed from a net.Conn
// (Attach). Every system call on it holds a reference, and it is closed
// once the connection has finished and the last reference is dropped
// (sock.go).
//
// Outbound, a connection has a bounded queue of frames. A publication is
// framed once (PrepareText) and the same slice is queued to every
// subscriber (Conn.Send). A writer takes everything queued for a connection
// and writes it with one writev(2). When the socket buffer is full the
// remainder waits for EPOLLOUT in the connection's loop; no goroutine waits.
// Send never blocks: a queue that would overflow closes the connection with
// 4108 (slow consumer).
//
// # Callbacks
//
// Handler.OnMessage runs on the connection's loop goroutine, serially per
// connection; Handler.OnClose runs exactly once on whichever transport
// goroutine finished the connection (loop, writer or heartbeat). Neither may
// block; both may call Send, SendText and Close.
//
// Text messages are delivered without UTF-8 validation: the JSON layer above
// rejects invalid input, and validating twice costs a pass over every byte.
//
// # Lock order
//
// See docs/LOCKORDER.md (every lock of the server, in one file).
package ws
